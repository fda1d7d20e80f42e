"""HTTP adapter: predicted demand per site, what the planner fills from.

``GET /api/v1/popularity/predicted?site=S[&limit=N]`` (operator, steering): titles by
predicted demand at site S, highest first: decayed request counts, a share of the other
sites', and the release boost (a title premiering within the lead time is listed before
anyone has asked for it).
"""

from __future__ import annotations

from aiohttp import web

from origin.control import popularity
from origin.control.http_appliances import SCORE_READERS, SCORES_LIMIT, catalog
from origin.control.http_common import (
    BEATS,
    CLOCK,
    SETTINGS,
    STORE,
    only_query,
    query_int,
    require,
    respond,
)
from origin.control.planning.predict import predict
from origin.control.validate import check_id
from vcdn.errors import ClientError
from vcdn.responses import PredictedPopularity, PredictedScore
from vcdn.schemas import encode


async def predicted(request: web.Request) -> web.Response:
    await require(request, SCORE_READERS)
    only_query(request, "site", "limit")
    site = request.query.get("site")
    if site is None:
        raise ClientError("Query parameter 'site' is required: demand is predicted per site.")
    check_id(site, "site")
    limit = query_int(request, "limit", 1000, 1, SCORES_LIMIT)
    await request.app[BEATS].flush()
    store = request.app[STORE]
    now = request.app[CLOCK]()
    half_life = request.app[SETTINGS].popularity_half_life
    own = popularity.by_site(popularity.current(await store.scores(site), now, half_life))
    totals = await store.title_totals(now, half_life)
    demand = predict(own, await catalog(request), [site], now, global_table=totals)[site]
    ranked = sorted(demand.items(), key=lambda item: (-item[1], item[0]))[:limit]
    top = [PredictedScore(t, s) for t, s in ranked]
    return respond(encode(PredictedPopularity(now, site, half_life, top)))
