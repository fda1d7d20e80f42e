"""The hit fast path: a connection protocol that answers plain hits without aiohttp.

Open Connect keeps hot small files in RAM and answers them with as little work as
possible; this is our version. A connection starts in this protocol. Each complete
request head is parsed by `edge.fasthead` (narrow and pure); when it is a GET/HEAD of a
fresh object this worker holds, with a body of at most `FAST_BODY` bytes (a playlist, an
init segment, a 16 KiB segment, a 64 KiB range of anything), the answer is planned by the
shared planner and written at once: bytes from RAM or one pread, headers precomputed but
for Date and Age, no routing, no Request object, no task.

Anything else (a miss, a bad token, a large body that wants sendfile, odd framing,
pipelined bytes after such a request) hands the connection, with every unread byte, to
aiohttp's RequestHandler, which keeps it from then on. Since every fast answer is written
synchronously before the next request is read, responses can never be reordered.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from edge.fasthead import parse_head
from edge.fill import VIA
from edge.keys import video_path
from edge.serve import cache_control_of, on_disk
from edge.store import Entry, object_key
from vcdn import tokens
from vcdn.errors import VcdnError
from vcdn.httplimits import HEAD_TIMEOUT_RESPONSE, HttpLimits
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.plan import Plan, plan_response
from vcdn.httpserve.send import direct_socket, send_direct
from vcdn.titles import is_valid_title

if TYPE_CHECKING:
    from edge.app import Edge

#: Bodies up to this size are answered here; larger ones go to aiohttp and sendfile.
FAST_BODY: Final = 256 * 1024
#: Answers waiting in the transport beyond this hand the connection to aiohttp.
WRITE_BACKLOG: Final = 1024 * 1024
_REASONS: Final = {
    200: "OK",
    206: "Partial Content",
    304: "Not Modified",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
}
_CORS: Final = "".join(f"{k}: {v}\r\n" for k, v in RESPONSE_HEADERS)
_CONDITIONAL: Final = frozenset(
    {"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}
)
#: Response heads of plain 200 answers, by (object file, response time, method): a new
#: version of an object has a new file name and a 304 refresh a new response time, so
#: entries never go stale, they only stop being asked for.
_HEADS: dict[tuple[str, float, str], tuple[bytes, int]] = {}
_HEADS_MAX: Final = 50_000
#: Appliance URLs already parsed and verified (per Edge: `Edge.fast_routes`).
_ROUTES_MAX: Final = 100_000


class _Clock:
    """The Date header, rebuilt once a second (as uvicorn does), not per response."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def date(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True)
        return self._text


CLOCK: Final = _Clock()


class FastProtocol(asyncio.Protocol):
    __slots__ = (
        "_buf",
        "_edge",
        "_head_timeout",
        "_head_timer",
        "_idle",
        "_last",
        "_server",
        "_task_handler",
        "_timeout",
        "transport",
    )

    def __init__(self, server: web.Server, edge: Edge, limits: HttpLimits) -> None:
        self._server = server
        self._edge = edge
        self._timeout = limits.keepalive_timeout
        self._head_timeout = limits.header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        #: aiohttp's Server looks at this on connection_lost; we never run a task.
        self._task_handler: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last = 0.0
        self.transport: asyncio.Transport | None = None

    # --- what aiohttp's Server expects of a connection (shutdown, close) ---------------

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def force_close(self) -> None:
        self.close()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp API)
        self.close()  # a fast connection never has a request in flight across awaits

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._server.connection_made(self, transport)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._idle = loop.call_later(self._timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._server.connection_lost(self, exc)  # type: ignore[arg-type]
        self.transport = None

    def _check_idle(self) -> None:
        # One deadline for an idle keep-alive connection and for a client still dribbling
        # its request head: bytes arriving do not push it back, only a whole request does.
        # A timestamp per request and one timer per period, not a timer per request.
        loop = asyncio.get_running_loop()
        left = self._last + self._timeout - loop.time()
        if left <= 0:
            self.close()
        else:
            self._idle = loop.call_later(left, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        edge = self._edge
        limit = edge.settings.max_header_bytes
        while self.transport is not None:
            if self.transport.get_write_buffer_size() > WRITE_BACKLOG:
                # A client pipelining faster than it reads: aiohttp has flow control.
                self._hand_off()
                return
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > limit:
                    self._hand_off()
                elif self._buf and self._head_timer is None:
                    # A head in progress must end within the head timeout (slowloris);
                    # armed once per head, so dribbled bytes do not push it back.
                    self._head_timer = asyncio.get_running_loop().call_later(
                        self._head_timeout, self._head_expired
                    )
                return
            head = parse_head(bytes(self._buf[:end]), limit)
            reply = (
                answer(edge, head.method, head.target, head.headers, head.keep_alive)
                if head is not None
                else None
            )
            if not isinstance(reply, bytes):
                self._hand_off()
                return
            del self._buf[: end + 4]
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self.transport.write(reply)
            self._last = asyncio.get_running_loop().time()
            if head is not None and not head.keep_alive:
                self.transport.close()
                return

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._buf:
            self.transport.write(HEAD_TIMEOUT_RESPONSE)
            self.close()

    def _hand_off(self) -> None:
        """Give the connection and every unread byte to aiohttp for good."""
        transport = self.transport
        assert transport is not None
        if self._idle is not None:
            self._idle.cancel()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._server.connection_lost(self, None)  # type: ignore[arg-type]
        self._edge.stats.handoffs += 1
        handler = self._server()
        self.transport = None
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buf:
            handler.data_received(bytes(self._buf))
        self._buf.clear()

    # --- the decision ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Large:
    """A fresh hit whose body goes out with sendfile: the head, the file and the plan."""

    head: bytes
    file: str
    plan: Plan


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
    if "?" in raw:
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
    return object_key(title, path), title, expires


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
        plan = plan_response(
            method,
            hdrs,
            size=entry.size,
            etag=entry.etag,
            last_modified=entry.last_modified,
            content_type=entry.content_type,
        )
        if plan.content_length > FAST_BODY:
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


def _tail(age: float, now: float, keep_alive: bool) -> bytes:
    """The fields that change per response (Age, Date), and the blank line."""
    tail = f"Age: {int(age) if age > 0 else 0}\r\nDate: {CLOCK.date(now)}\r\n"
    if not keep_alive:
        tail += "Connection: close\r\n"
    return (tail + "\r\n").encode("latin-1")


def _small(entry: Entry, edge: Edge, path: str) -> bytes | None:
    """A small object's bytes from RAM (if its file still exists) or from disk."""
    body = edge.ram.get(entry.file)
    if body is not None:
        return body if on_disk(path) else None
    body = _read(path, entry.size)
    if body is not None:
        edge.ram.put(entry.file, body)
    return body


def _prefix(plan: Any, entry: Entry, live: bool) -> bytes:
    """Every header line but Age and Date (which change), without the final CRLF."""
    lines = [f"HTTP/1.1 {plan.status} {_REASONS.get(plan.status, 'OK')}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in plan.headers]
    lines.append(_CORS)
    if plan.status in (200, 206, 304):
        lines.append(f"Cache-Control: {cache_control_of(entry, live)}\r\n")
    lines += [f"{k}: {v}\r\n" for k, v in entry.headers]
    lines.append(f"Via: {VIA}\r\n")
    return "".join(lines).encode("latin-1")


def _pread_spans(path: str, plan: Any) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if plan.multipart is None:
            r = plan.spans[0]
            data = os.pread(fd, r.length, r.first)
            return data if len(data) == r.length else None
        out = []
        for part in plan.multipart.parts:
            data = os.pread(fd, part.range.length, part.range.first)
            if len(data) != part.range.length:
                return None
            out += (part.header, data)
        out.append(plan.multipart.trailer)
        return b"".join(out)
    finally:
        os.close(fd)


def _read(path: str, size: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)
    return data if len(data) == size else None


class FastSite(web.BaseSite):
    """A listening socket whose connections start in `FastProtocol`."""

    __slots__ = ("_edge", "_limits", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: Any,
        edge: Edge,
        *,
        limits: HttpLimits,
        shutdown_timeout: float,
        backlog: int,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._sock = sock
        self._edge = edge
        self._limits = limits

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FastProtocol(server, self._edge, self._limits),
            sock=self._sock,
            backlog=self._backlog,
        )


class _AlreadySent(web.StreamResponse):
    """Tells aiohttp the answer went out already and the connection stays open."""

    def __init__(self, length: int) -> None:
        super().__init__(status=200)
        self._sent_length = length

    async def prepare(self, request: web.BaseRequest) -> None:  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None

    @property
    def keep_alive(self) -> bool:
        return True

    @property
    def content_length(self) -> int:  # type: ignore[override]
        return self._sent_length


async def _send_large(
    request: web.BaseRequest, transport: Any, sock: Any, large: Large
) -> web.StreamResponse:
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
    return _AlreadySent(large.plan.content_length)


def install_request_fast_path(server: web.Server, edge: Edge) -> None:
    """The same answers for connections aiohttp owns (after a hand-off, or when the edge
    runs on another site): checked before routing, middlewares and response objects.

    Call after ``runner.setup()`` and before any connection: aiohttp's per-connection
    handlers copy ``server.request_handler`` when they are created.
    """
    slow: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] = server.request_handler

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        if (
            (method == "GET" or method == "HEAD")
            and request.version == HttpVersion11
            and request.keep_alive
        ):
            transport = request.transport
            if transport is not None and not transport.is_closing():
                sock = direct_socket(transport)
                reply = answer(
                    edge,
                    method,
                    request.raw_path,
                    request.headers,
                    True,
                    allow_large=sock is not None,
                )
                if isinstance(reply, bytes):
                    transport.write(reply)
                    return _AlreadySent(len(reply))
                if reply is not None:
                    return await _send_large(request, transport, sock, reply)
        return await slow(request)

    server.request_handler = handler
