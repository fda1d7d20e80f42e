"""Handlers of the appliance registry: register, heartbeat, list (for steering), fill
manifests, heartbeat history and popularity."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Final

from aiohttp import web

from origin.control import health, popularity
from origin.control.auth import Principal, authorize
from origin.control.beat_parse import Limits, parse_off_loop
from origin.control.http_common import (
    BEATS,
    CATALOG,
    CLOCK,
    LIVENESS,
    SETTINGS,
    STORE,
    CatalogCache,
    forget_tokens,
    log,
    only_query,
    query_float,
    query_int,
    read_body,
    read_raw,
    require,
    respond,
)
from origin.control.planning.shared import catalog_digest, manifest_text
from origin.control.store import ApplianceRecord, Beat, Store
from origin.control.validate import check_id, check_registration
from vcdn.errors import Forbidden, NotFound, VcdnError
from vcdn.logs import event
from vcdn.prefixes import check_approved, check_width
from vcdn.responses import Deleted, Popularity, Score
from vcdn.schemas import (
    ApplianceState,
    ApplianceView,
    Registration,
    TitleManifest,
    encode,
)

REGISTRARS: Final = frozenset({"appliance", "operator"})
BEATERS: Final = frozenset({"appliance"})
LISTERS: Final = frozenset({"steering", "operator", "appliance"})
FILLERS: Final = frozenset({"appliance", "operator"})
OPERATORS: Final = frozenset({"operator"})
SCORE_READERS: Final = frozenset({"operator", "steering"})
HISTORY_LIMIT: Final = 1000
SCORES_LIMIT: Final = 10_000
PAGE_MAX: Final = 5000  # appliances in one page of GET /appliances

def view(request: web.Request, record: ApplianceRecord, now: float) -> ApplianceView:
    state = health.state(record.last_heartbeat, record.reported_state, now, request.app[LIVENESS])
    return record.view(state)


async def known_appliance(request: web.Request, appliance: str) -> ApplianceRecord:
    record = await request.app[STORE].get_appliance(appliance)
    if record is None:
        raise NotFound(f"Appliance {appliance!r} is not registered; POST /api/v1/appliances first.")
    return record


async def check_authority(
    request: web.Request, who: Principal, registration: Registration
) -> Registration:
    """The registration, prefixes normalised, if `who` may make it (else 400/403).

    An appliance must be enrolled, keep the site the operator gave it, keep the
    `public_url` it registered first, and claim only approved prefixes. The operator may
    change anything, within the approved prefixes of an enrolled appliance.
    """
    s = request.app[SETTINGS]
    nets = check_width(registration.prefixes, s.max_prefix_v4, s.max_prefix_v6)
    registration = replace(registration, prefixes=list(dict.fromkeys(str(n) for n in nets)))
    store = request.app[STORE]
    enrollment = await store.get_enrollment(registration.id)
    aid = registration.id
    if enrollment is None:
        if who.role == "appliance":
            raise Forbidden(
                f"Appliance {aid!r} is not enrolled; an operator enrols it first "
                "(POST /api/v1/enrollments or 'vcdn control appliance enroll')."
            )
        return registration
    check_approved(aid, nets, enrollment.prefixes)
    if who.role != "appliance":
        return registration
    if registration.site != enrollment.site:
        raise Forbidden(
            f"Appliance {aid!r} is enrolled in site {enrollment.site!r}; only an operator "
            f"can move it to {registration.site[:64]!r} (PUT /api/v1/enrollments/{aid})."
        )
    current = await store.get_appliance(aid)
    if current is not None and current.public_url != registration.public_url:
        raise Forbidden(
            f"Appliance {aid!r} is registered at {current.public_url}; changing its "
            "public_url needs the operator role."
        )
    if current is not None and current.tls_url and current.tls_url != registration.tls_url:
        raise Forbidden(
            f"Appliance {aid!r} is registered at {current.tls_url}; changing its "
            "tls_url needs the operator role."
        )
    return registration


async def register(request: web.Request) -> web.Response:
    who = await require(request, REGISTRARS)  # 401 before reading a body from a stranger
    registration = await read_body(request, Registration)
    check_registration(registration)
    authorize(who, REGISTRARS, appliance=registration.id)
    try:
        registration = await check_authority(request, who, registration)
    except VcdnError as exc:
        event(log, "registration_refused", logging.WARNING, appliance=registration.id,
              role=who.role, detail=str(exc))
        raise
    now = request.app[CLOCK]()
    record, created = await request.app[STORE].put_appliance(registration, now)
    request.app[BEATS].registered(registration.id)
    event(
        log,
        "appliance_registered",
        appliance=registration.id,
        site=registration.site,
        created=created,
    )
    return respond(encode(view(request, record, now)), status=201 if created else 200)


async def decommission(request: web.Request) -> web.Response:
    """An operator retires an appliance: steering and fill plans stop seeing it, and the
    tokens bound to it stop working, so the retired box (or whoever took it) cannot simply
    register again. Its enrolment stays: rotating its token brings it back on purpose."""
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, OPERATORS)
    beats = request.app[BEATS]
    await beats.flush()
    store = request.app[STORE]
    deleted = await store.delete_appliance(appliance)
    beats.forget(appliance)
    if not deleted:
        raise NotFound(f"Appliance {appliance!r} is not registered.")
    revoked = await store.revoke_subject(appliance)
    forget_tokens(request)
    event(log, "appliance_deleted", appliance=appliance, revoked=revoked)
    return respond(encode(Deleted(appliance, revoked)))


async def heartbeat(request: web.Request) -> web.Response:
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, BEATERS, appliance=appliance)
    # The history keeps the (bounded) raw text; a big beat is parsed off the event loop.
    s = request.app[SETTINGS]
    raw = await read_raw(request, s.heartbeat_max_body)
    limits = Limits(s.heartbeat_max_titles, s.heartbeat_max_count, s.history_detail_chars)
    beat, text = await parse_off_loop(raw, limits)
    beats = request.app[BEATS]
    if not await beats.is_known(appliance):
        raise NotFound(f"Appliance {appliance!r} is not registered; POST /api/v1/appliances first.")
    now = request.app[CLOCK]()
    await beats.add(Beat(appliance, now, beat, text))
    state = health.state(now, beat.state, now, request.app[LIVENESS])
    # `responses.HeartbeatAck`, built directly: every appliance sends one every interval.
    return respond({"state": state, "heartbeat_interval": request.app[SETTINGS].heartbeat_interval})


async def list_appliances(request: web.Request) -> web.Response:
    """Every appliance, or with `limit` one page of them in id order: `next` is the id to
    pass as `after` for the following page (null on the last). A page is built on the
    event loop like any answer, so a big fleet is read in pages: serialising 10,000
    appliances at once would hold every heartbeat back for ~100 ms."""
    await require(request, LISTERS)
    only_query(request, "limit", "after")
    limit = query_int(request, "limit", PAGE_MAX, 1, PAGE_MAX) if "limit" in request.query else None
    after = request.query.get("after")
    if after is not None:
        check_id(after, "Query parameter 'after'")
    if after is None:  # a reader sees its own writes from its first page on
        await request.app[BEATS].flush()
    now = request.app[CLOCK]()
    records = await request.app[STORE].list_appliances(after, limit)
    live = request.app[LIVENESS]

    def state_of(r: ApplianceRecord) -> ApplianceState:
        return health.state(r.last_heartbeat, r.reported_state, now, live)

    body = {
        "appliances": [r.view_json(state_of(r)) for r in records],
        "heartbeat_interval": request.app[SETTINGS].heartbeat_interval,
        "generated_at": now,
    }
    if limit is not None:  # only the paged form has `next`: older clients decode strictly
        body["next"] = records[-1].id if len(records) == limit else None
    return respond(body)


async def catalog_of(store: Store, cache: CatalogCache) -> tuple[list[TitleManifest], str]:
    """The catalog and a digest of its content, re-read only when the stamp moved."""
    async with cache.lock:
        stamp = await store.catalog_stamp()
        if stamp != cache.stamp:
            cache.titles = await store.catalog()
            cache.digest = catalog_digest(cache.titles)
            cache.stamp = stamp
        return cache.titles, cache.digest


async def catalog(request: web.Request) -> list[TitleManifest]:
    return (await catalog_of(request.app[STORE], request.app[CATALOG]))[0]


async def fill_manifest(request: web.Request) -> web.Response:
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, FILLERS, appliance=appliance)
    store = request.app[STORE]
    await request.app[BEATS].flush()
    me = await known_appliance(request, appliance)
    now = request.app[CLOCK]()
    # Only its site: a plan depends on nothing else of the fleet (and 10,000 appliances
    # asking every few minutes must not each read all 10,000).
    site = [view(request, r, now) for r in await store.site_appliances(me.site)]
    titles, stamp = await catalog_of(store, request.app[CATALOG])
    # Placement across the site by the steering ranking, stable from the stored plan
    # (origin.control.planning, docs/cachesim.md); stored so every replica gives the same.
    text = await manifest_text(
        store, appliance, site, titles, stamp, now,
        request.app[SETTINGS].popularity_half_life,
    )
    return web.Response(text=text, content_type="application/json")


async def heartbeat_history(request: web.Request) -> web.Response:
    await require(request, OPERATORS)
    appliance = check_id(request.match_info["id"], "appliance id")
    only_query(request, "since", "limit")
    since = query_float(request, "since", 0.0)
    limit = query_int(request, "limit", 100, 1, HISTORY_LIMIT)
    await known_appliance(request, appliance)
    await request.app[BEATS].flush()
    rows = await request.app[STORE].heartbeats(appliance, since, limit)
    return respond(
        {
            "appliance": appliance,
            "heartbeats": [{"at": r.at, "heartbeat": r.heartbeat} for r in rows],
        }
    )


async def scores(request: web.Request) -> web.Response:
    await require(request, SCORE_READERS)
    only_query(request, "site", "limit")
    site = request.query.get("site")
    if site is not None:
        check_id(site, "site")
    limit = query_int(request, "limit", 1000, 1, SCORES_LIMIT)
    await request.app[BEATS].flush()
    now = request.app[CLOCK]()
    half_life = request.app[SETTINGS].popularity_half_life
    current = popularity.current(await request.app[STORE].scores(site), now, half_life)
    top = [Score(s.title, s.site, s.score) for s in current[:limit]]
    return respond(encode(Popularity(now, half_life, top)))
