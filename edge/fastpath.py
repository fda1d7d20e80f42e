"""The hit decision of the edge, pure but for reads: request head → whole answer or "not mine".

`answer(edge, head)` routes an appliance or proxy target (token checked, both halves of
the route remembered: `edge.fastroutes`), finds a fresh stored object (in this worker's
memory, else in the shared index: stored by another worker, or a Vary variant) and
answers it with the one hit planner of the origin and the edge (`vcdn.httpserve.hit`):
the answer's bytes (a body from RAM or one pread), a `Large` (a body sent from its
file), or None (a miss, a bad token, client cache directives: aiohttp decides).

Its callers are the hit connection protocol (`vcdn.httpserve.hitproto`) and, for
connections aiohttp owns, the request-level hook (`vcdn.httpserve.hot.install_answer`),
behind which `install_crowds` answers blocking LL-HLS playlist requests and growing parts
as one crowd.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from edge import forwarding, freshness, vary
from edge.selection import policy, selects, variant
from edge.serve import on_disk, read_small, stored_head
from edge.store import Entry
from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.hit import Answer, Large, Prepared, deliver, file_opener, plan_hit
from vcdn.httpserve.hot import AlreadySent, install_hook, send_reply

if TYPE_CHECKING:
    from edge.engine import Edge

#: What the planner keeps per stored version, by (object file, response time): a new
#: version of an object has a new file name and a 304 refresh a new response time, so
#: entries never go stale, they only stop being asked for.
_PREPARED: dict[tuple[str, float], Prepared] = {}
_PREPARED_MAX: Final = 50_000
#: The Vary fields of the variants last selected per primary key: where to look first.
#: A hint only (every use checks the selection), so it needs no invalidation.
_VARIES: dict[str, tuple[str, ...]] = {}
_VARIES_MAX: Final = 50_000
#: Fields a fill's request gets from the hop rather than from the client's head.
_HOP_FIELDS: Final = frozenset({"x-forwarded-for"})


def head_answer(edge: Edge) -> Answer:
    """The edge's `vcdn.httpserve.hit.Answer`."""

    def on_head(head: Head) -> bytes | Large | None:
        return answer(edge, head)

    return on_head


def answer(edge: Edge, head: Head) -> bytes | Large | None:
    """The whole answer to a GET/HEAD if it is a fresh hit this worker holds, else None."""
    edge.check_purges()
    settings = edge.settings
    now = time.time()
    raw, hdrs = head.target, head.headers
    if settings.mode == "proxy":
        # Keys are raw paths; requests with credentials are never answered from the cache.
        if "Authorization" in hdrs:
            return None
        if settings.query_policy == "ignore":
            raw = raw.partition("?")[0]
        return _hit(edge, head, raw, "", now)
    route = edge.fast_routes.route(raw, edge.keys, now)
    if route is None:
        return None  # the application answers (403 with the reason logged, 400, 404)
    key, title, expires = route
    if expires < now:
        return None  # the token expired: the full path answers 403 and logs why
    return _hit(edge, head, key, title, now)


def _hit(edge: Edge, head: Head, key: str, title: str, now: float) -> bytes | Large | None:
    hdrs = head.headers
    entry = edge.store.get(key) or _shared(edge, key, hdrs)
    if entry is None:
        return None
    age = now - entry.response_time + entry.initial_age
    if "Cache-Control" in hdrs or "Pragma" in hdrs:
        # The client's own directives (RFC 9111 §5.2.1): max-age, min-fresh, max-stale...
        # A request that forbids storing (no-store) is the application's: proxy mode
        # passes it through, past the cache.
        cc = hdrs.get("Cache-Control")
        if (cc is not None and "no-store" in cc.lower()) or not freshness.judge(
            policy(entry), age, hdrs
        ).fresh:
            return None
    elif entry.lifetime <= age or (entry.cache_control and "no-cache" in entry.cache_control):
        return None  # stale, or to be revalidated first: a miss
    reply = _planned(edge, entry, head.method, hdrs, head.keep_alive, now, age, None)
    if reply is None:
        return None
    edge.store.touch(entry.key, now)
    edge.stats.fast_hit(title, reply[1])
    return reply[0]


def _shared(edge: Edge, key: str, hdrs: Mapping[str, str]) -> Entry | None:
    """What this worker does not hold in memory but may answer as a hit all the same: an
    object another worker (or this cache before a restart) stored, from the shared index,
    or the Vary variant of `key` the request selects (`edge.vary`). Index reads on the
    loop thread (WAL readers, no lock), after which the entry is remembered. None when
    nothing is stored, or a fill of `key` is under way here (the application joins it,
    or waits for it when it may not share it)."""
    fills = edge.fills
    if fills is None or fills.inflight(key) is not None:
        return None
    store = edge.store
    entry = store.peek(key)
    if entry is not None:
        return entry
    sent = forwarding.fill_headers(edge.settings.mode, hdrs.items(), None)
    names = _VARIES.get(key)
    if names is not None:
        # The variant this request selected last time is likely remembered already.
        entry = store.get(vary.variant_key(key, names, sent))
        if entry is not None and selects(entry, sent):
            return entry
    variants = store.variants(key)
    if not variants:
        return None
    found = variant(variants, sent)
    if found is None:
        return None
    names = vary.fields(", ".join(v for n, v in found.headers if n.lower() == "vary"))
    if _HOP_FIELDS.intersection(names):
        # Keyed by fields of the hop (the client's address in X-Forwarded-For), which
        # the request head alone does not give: the application selects.
        return None
    if len(_VARIES) >= _VARIES_MAX:
        _VARIES.clear()
    _VARIES[key] = names
    return store.peek(found.key)


def _planned(
    edge: Edge,
    entry: Entry,
    method: str,
    hdrs: Mapping[str, str],
    keep_alive: bool,
    now: float,
    age: float,
    status: str | None,
) -> tuple[bytes | Large, int] | None:
    """The one hit pipeline of a stored entry: the planner's answer and its body bytes,
    or None when its file went. `status` is the Cache-Status entry if not a plain hit."""
    file = edge.store.file_str(entry)
    live = edge.settings.live
    prepared = (
        _prepared(entry, live) if status is None
        else Prepared.of(entry, stored_head(entry, live, status))
    )
    data, plan = plan_hit(method, hdrs, entry, prepared, now, age=age, keep_alive=keep_alive)
    body = None
    if plan.has_body:
        if entry.size <= edge.ram.object_max:
            body = _small(entry, edge, file)
            if body is None:
                return None
    elif plan.status in (200, 206) and not on_disk(file):
        return None  # a HEAD of an object purged by another worker
    reply = deliver(data, plan, body, file_opener(file))
    if reply is None or (type(reply) is Large and not on_disk(file)):
        return None  # purged or evicted by another worker: the full path fills again
    return reply, plan.content_length if plan.has_body else 0


async def send_stored(
    request: web.BaseRequest, edge: Edge, entry: Entry, status: str
) -> tuple[AlreadySent, int] | None:
    """A stored entry's answer on a connection aiohttp owns, through the same pipeline as
    every hit: after a fill or a revalidation, a stale answer standing in for an upstream
    error, a Vary variant. Returns the answer and its body bytes, or None (file gone)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    now = time.time()
    keep_alive = request.keep_alive and request.version == HttpVersion11
    age = freshness.current_age(entry.initial_age, entry.response_time, now)
    planned = _planned(edge, entry, request.method, request.headers, keep_alive, now, age,
                       status)
    if planned is None:
        return None
    sent = await send_reply(request, transport, planned[0], keep_alive=keep_alive)
    return sent, planned[1]


def _small(entry: Entry, edge: Edge, path: str) -> bytes | None:
    """A small object's bytes from RAM (if its file still exists) or from disk."""
    body = edge.ram.get(entry.file)
    if body is not None:
        return body if on_disk(path) else None
    body = read_small(path, entry.size)
    if body is not None:
        edge.ram.put(entry.file, body)
    return body


def _prepared(entry: Entry, live: bool) -> Prepared:
    key = (entry.file, entry.response_time)
    prepared = _PREPARED.get(key)
    if prepared is None:
        if len(_PREPARED) >= _PREPARED_MAX:
            _PREPARED.clear()
        prepared = _PREPARED[key] = Prepared.of(entry, stored_head(entry, live))
    return prepared


def install_crowds(server: web.Server, edge: Edge) -> None:
    """On connections aiohttp owns, a GET that is not a hit but a blocking LL-HLS playlist
    request or a growing part (the preload hint) whose fill is in flight is answered with
    the rest of its crowd, one serialisation for all (`edge.llcrowd`). Install before
    `install_answer`, so hits are looked at first."""

    async def join(request: web.BaseRequest, transport: asyncio.Transport) -> AlreadySent | None:
        if request.method != "GET":
            return None
        sent = await edge.crowds.join_any(request.raw_path, request.headers, transport)
        return AlreadySent(200, sent) if sent is not None else None

    install_hook(server, join)
