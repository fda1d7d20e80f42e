"""Handlers of the title catalog: `POST /titles` (packager), `GET /titles[/{id}]`."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Final

from aiohttp import web

from origin.control.http_common import (
    BEATS,
    CATALOG,
    CLOCK,
    SETTINGS,
    STORE,
    log,
    read_body,
    require,
    respond,
)
from origin.control.validate import check_id, check_title
from vcdn.errors import NotFound
from vcdn.logs import event
from vcdn.responses import TitleList, TitleRegistered, TitleSummary
from vcdn.schemas import TitleManifest, encode

WRITERS: Final = frozenset({"packager", "operator"})
READERS: Final = frozenset({"operator", "packager", "steering", "appliance"})

async def popularity_totals(request: web.Request, title: str | None = None) -> dict[str, float]:
    """{title: score summed over sites, decayed to now}."""
    await request.app[BEATS].flush()
    half_life = request.app[SETTINGS].popularity_half_life
    return await request.app[STORE].title_totals(request.app[CLOCK](), half_life, title)


async def post_title(request: web.Request) -> web.Response:
    who = await require(request, WRITERS)
    manifest = await read_body(request, TitleManifest)
    check_title(manifest)
    created = await request.app[STORE].put_title(manifest, request.app[CLOCK]())
    request.app[CATALOG].invalidate()
    event(
        log,
        "title_registered",
        title=manifest.title,
        created=created,
        role=who.role,
        files=len(manifest.files),
        bytes=manifest.total_bytes,
    )
    answer = TitleRegistered(manifest.title, created, len(manifest.files), manifest.total_bytes)
    return respond(encode(answer), status=201 if created else 200)


async def list_titles(request: web.Request) -> web.Response:
    await require(request, READERS)
    summaries = await request.app[STORE].list_titles()
    totals = await popularity_totals(request)
    return respond(encode(TitleList([
        TitleSummary(**asdict(s), popularity=totals.get(s.title, 0.0)) for s in summaries
    ])))


async def get_title(request: web.Request) -> web.Response:
    await require(request, READERS)
    # A malformed id is a 400 before any query; a well-formed unknown one a 404.
    title = check_id(request.match_info["id"], "title")
    text = await request.app[STORE].get_title(title)
    if text is None:
        raise NotFound(f"Title {title!r} is not registered.")
    manifest = json.loads(text)
    manifest["popularity"] = (await popularity_totals(request, title)).get(title, 0.0)
    return respond(manifest)
