"""The hit decision of the edge, pure but for reads: request head → whole answer or "not mine".

`answer(edge, method, target, headers, keep_alive)` routes an appliance or proxy target
(token checked, the verified route remembered), finds a fresh stored object this worker
holds, plans the answer with the shared planner (`vcdn.httpserve.plan`) and serialises
its head with the one serialiser (`vcdn.httpserve.wire`): the answer's bytes (a body of at
most `FAST_BODY` from RAM or one pread), a `Large` (head, file and plan of a body to send
with sendfile), or None (a miss, a bad token, client cache directives: aiohttp decides).

Its callers are the hit connection protocol (`vcdn.httpserve.hitproto`, through
`head_answer`) and, for connections
aiohttp owns, the one request-level hook of `vcdn.httpserve.hot`
(`install_request_fast_path`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from edge import cachestatus
from edge.fill import VIA
from edge.keys import video_path
from edge.llhls import fast_query
from edge.serve import cache_control_of, on_disk, read_small
from edge.store import Entry, object_key
from vcdn import tokens
from vcdn.errors import NotFound, VcdnError
from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.hit import Answer, Large
from vcdn.httpserve.hot import AlreadySent, install_hook
from vcdn.httpserve.plan import Plan, plan_stored
from vcdn.httpserve.send import direct_socket, read_spans, send_direct
from vcdn.httpserve.wire import StoredHead, head_prefix, head_tail
from vcdn.titles import is_valid_title

if TYPE_CHECKING:
    from edge.app import Edge

#: Bodies up to this size go out with their head in one write; larger ones from a task.
FAST_BODY: Final = 256 * 1024
#: Spans read from disk from this size on go out with sendfile, not pread and a copy.
DIRECT_MIN: Final = 16 * 1024
_CONDITIONAL: Final = frozenset(
    {"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}
)
#: Response heads of plain 200 answers, by (object file, response time, method): a new
#: version of an object has a new file name and a 304 refresh a new response time, so
#: entries never go stale, they only stop being asked for.
_HEADS: dict[tuple[str, float, str], tuple[bytes, int]] = {}
_HEADS_MAX: Final = 50_000
#: The fixed part of every answer's head, by (object file, response time), likewise.
_STORED: dict[tuple[str, float], StoredHead] = {}
#: Appliance URLs already parsed and verified (per Edge: `Edge.fast_routes`).
_ROUTES_MAX: Final = 100_000




def head_answer(edge: Edge) -> Answer:
    """The edge's `Answer` for the hit connection protocol (`vcdn.httpserve.hitproto`)."""

    def on_head(head: Head) -> bytes | Large | None:
        return answer(edge, head.method, head.target, head.headers, head.keep_alive,
                      allow_large=True)

    return on_head


def answer(
    edge: Edge,
    method: str,
    raw: str,
    hdrs: Mapping[str, str],
    keep_alive: bool,
    *,
    allow_large: bool = False,
) -> bytes | Large | None:
    """The whole response to a GET/HEAD if it is a fresh small hit this worker holds;
    with `allow_large`, a `Large` for a fresh hit with a bigger body."""
    edge.check_purges()
    settings = edge.settings
    now = time.time()
    if settings.mode == "proxy":
        # Keys are raw paths; requests with credentials are never answered from the cache.
        if "Authorization" in hdrs:
            return None
        if settings.query_policy == "ignore":
            raw = raw.partition("?")[0]
        return _hit(edge, method, raw, "", hdrs, keep_alive, allow_large, now)
    route = edge.fast_routes.get(raw)
    if route is None:
        route = _route(edge, raw, now)
        if route is None:
            return None
        routes = edge.fast_routes
        if len(routes) >= _ROUTES_MAX:
            routes.clear()
        routes[raw] = route
    key, title, expires = route
    if expires < now:
        return None  # the token expired: the full path answers 403 and logs why
    return _hit(edge, method, key, title, hdrs, keep_alive, allow_large, now)


def _route(edge: Edge, raw: str, now: float) -> tuple[str, str, float] | None:
    """(cache key, title, valid until) of an appliance URL, or None if the full path
    must answer it. Remembered per raw target (token included) by the caller, since a
    player asks for the same URLs over and over."""
    raw, suffix = fast_query(raw)  # LL-HLS directives are part of the key (edge.llhls)
    if suffix is None:
        return None
    parts = raw.split("/", 4)
    try:
        if len(parts) == 5 and parts[1] == "s":
            _, _, token, title, rest = parts
            if not is_valid_title(title):
                return None
            kid = tokens.verify(token, title, edge.keys, now).key_id
            # Remembered until the token or its key expires, whichever is first.
            expires = min(float(tokens.parse(token).expires), edge.keys.valid_until(kid))
        elif len(parts) >= 4 and parts[1] == "v" and edge.settings.auth == "none":
            _, _, title, rest = raw.split("/", 3)
            if not is_valid_title(title):
                return None
            expires = math.inf
        else:
            return None
        path = video_path(rest)
    except VcdnError:
        return None  # aiohttp answers (403 with the reason logged, 400, 404)
    return object_key(title, path) + suffix, title, expires


def _hit(
    edge: Edge,
    method: str,
    key: str,
    title: str,
    hdrs: Mapping[str, str],
    keep_alive: bool,
    allow_large: bool,
    now: float,
) -> bytes | Large | None:
    entry = edge.store.get(key)
    if entry is None:
        return None
    age = now - entry.response_time + entry.initial_age
    if entry.lifetime <= age or "Cache-Control" in hdrs or "Pragma" in hdrs:
        return None  # stale, or the client has cache directives: the full path decides
    file = edge.store.file_str(entry)
    plain = not any(name in hdrs for name in _CONDITIONAL)
    cached = _HEADS.get((entry.file, entry.response_time, method)) if plain else None
    if cached is not None:
        prefix, length = cached
        if method == "HEAD":
            body = b""
            if not on_disk(file):
                return None
        else:
            body = _small(entry, edge, file) if length <= edge.ram.object_max else None
            if body is None:
                return None
    else:
        if entry.cache_control and "no-cache" in entry.cache_control:
            return None
        plan = plan_stored(method, hdrs, entry)
        from_disk = plan.has_body and entry.size > edge.ram.object_max
        if plan.content_length > FAST_BODY or (
            allow_large and from_disk and plan.content_length >= DIRECT_MIN
        ):
            if not allow_large or not on_disk(file):
                return None
            edge.store.touch(entry.key, now)
            edge.stats.fast_hit(title, plan.content_length if plan.has_body else 0)
            head = _prefix(plan, entry, edge.settings.live) + _tail(age, now, keep_alive)
            return Large(head, file, plan)
        body = b""
        if plan.has_body and entry.size <= edge.ram.object_max:
            data = _small(entry, edge, file)
            if data is None:
                return None
            if plan.multipart is not None:
                body = plan.multipart.assemble(data)
            else:
                r = plan.spans[0]
                body = data if r.length == len(data) else data[r.first : r.last + 1]
        elif plan.has_body:
            # A small part of a large object (a 64 KiB range): one pread per span.
            spans = _pread_spans(file, plan)
            if spans is None:
                return None
            body = spans
        elif plan.status in (200, 206) and not on_disk(file):
            return None
        prefix = _prefix(plan, entry, edge.settings.live)
        if plain and plan.status == 200 and plan.content_length <= edge.ram.object_max:
            if len(_HEADS) >= _HEADS_MAX:
                _HEADS.clear()
            _HEADS[(entry.file, entry.response_time, method)] = (
                prefix,
                plan.content_length,
            )
    edge.store.touch(entry.key, now)
    edge.stats.fast_hit(title, len(body))
    return b"".join((prefix, _tail(age, now, keep_alive), body))


def _small(entry: Entry, edge: Edge, path: str) -> bytes | None:
    """A small object's bytes from RAM (if its file still exists) or from disk."""
    body = edge.ram.get(entry.file)
    if body is not None:
        return body if on_disk(path) else None
    body = read_small(path, entry.size)
    if body is not None:
        edge.ram.put(entry.file, body)
    return body


def stored_head(entry: Entry, live: bool) -> StoredHead:
    """What every answer from `entry` carries besides the planner's fields, Age and Date."""
    return StoredHead.of(
        (*entry.headers, ("Via", VIA), ("Cache-Status", cachestatus.HIT)),
        cache_control_of(entry, live),
    )


def _prefix(plan: Plan, entry: Entry, live: bool) -> bytes:
    key = (entry.file, entry.response_time)
    stored = _STORED.get(key)
    if stored is None:
        if len(_STORED) >= _HEADS_MAX:
            _STORED.clear()
        stored = _STORED[key] = stored_head(entry, live)
    return head_prefix(plan, stored)


def _tail(age: float, now: float, keep_alive: bool) -> bytes:
    return head_tail(now, age=age, keep_alive=keep_alive)


def _pread_spans(path: str, plan: Plan) -> bytes | None:
    """The planned spans read from disk (`vcdn.httpserve.send.read_spans`); None if the
    file went or is shorter than planned."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return read_spans(fd, plan)
    except NotFound:
        return None
    finally:
        os.close(fd)


async def _send_large(
    request: web.BaseRequest, transport: Any, sock: Any, large: Large
) -> AlreadySent:
    """Head through the transport, body with sendfile(2) (`vcdn.httpserve.send`)."""
    try:
        fd = os.open(large.file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        transport.abort()  # counted as a hit already; the file went between stat and open
        raise ConnectionResetError("object evicted while being sent") from None
    try:
        if large.plan.has_body:
            await send_direct(
                transport, request.writer, sock, fd, large.plan, lambda: transport.write(large.head)
            )
        else:
            transport.write(large.head)
    finally:
        os.close(fd)
    return AlreadySent(large.plan.status, large.plan.content_length)


def install_request_fast_path(server: web.Server, edge: Edge) -> None:
    """The same answers for connections aiohttp owns (after a hand-off, or when the edge
    runs on another site), through the one request-level hook (`vcdn.httpserve.hot`)."""

    async def hit(request: web.BaseRequest, transport: asyncio.Transport) -> AlreadySent | None:
        sock = direct_socket(transport)
        reply = answer(
            edge, request.method, request.raw_path, request.headers, True,
            allow_large=sock is not None,
        )
        if isinstance(reply, bytes):
            transport.write(reply)
            return AlreadySent(200, len(reply))
        if reply is not None:
            return await _send_large(request, transport, sock, reply)
        if request.method == "GET":
            # A blocking LL-HLS playlist request whose fill is in flight: answered with
            # the rest of its crowd, one serialisation for all (`edge.llcrowd`).
            sent = await edge.crowds.join(request.raw_path, request.headers, transport)
            if sent is not None:
                return AlreadySent(200, sent)
        return None

    install_hook(server, hit)
