"""The hit connection protocol: every hit answered without aiohttp.

Open Connect keeps hot small files in RAM and answers them with as little work as
possible; this is our version. A connection starts in this protocol. Each complete
request head is parsed by `edge.fasthead` (narrow and pure); when it is a GET/HEAD of a
fresh object this worker holds, the answer is planned by the shared planner and its head
serialised by the one serialiser (`vcdn.httpserve.wire`). A body of at most `FAST_BODY`
bytes (a playlist, an init segment, a 16 KiB segment, a 64 KiB range of anything) is
written at once with its head: bytes from RAM or one pread, no routing, no Request
object, no task. A larger body (a whole 2 MiB segment) is sent by one task through
`vcdn.httpserve.body`: sendfile on a plain socket, pread and write through the transport
where there is none (TLS); reading pauses meanwhile, so answers stay in order.

Anything else (a miss, a bad token, odd framing, another method) hands the connection,
with every unread byte, to aiohttp's RequestHandler, which keeps it from then on; hits
on such a connection are still answered before routing, by the request-level hook
(`install_request_fast_path`, the one hook of `vcdn.httpserve.hot`).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from edge import cachestatus
from edge.fasthead import parse_head
from edge.fill import VIA
from edge.keys import video_path
from edge.llhls import fast_query
from edge.serve import cache_control_of, on_disk
from edge.store import Entry, object_key
from vcdn import tokens
from vcdn.errors import VcdnError
from vcdn.httplimits import HEAD_TIMEOUT_RESPONSE, HttpLimits
from vcdn.httpserve.body import SocketSink, send_head_and_body
from vcdn.httpserve.hot import AlreadySent, install_hook
from vcdn.httpserve.plan import Plan, plan_response
from vcdn.httpserve.send import direct_socket, send_direct
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


class FastProtocol(asyncio.Protocol):
    __slots__ = (
        "_blocked",
        "_buf",
        "_closing",
        "_drained",
        "_edge",
        "_head_timeout",
        "_head_timer",
        "_idle",
        "_last",
        "_out",
        "_paused",
        "_sending",
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
        #: aiohttp's Server looks at this on connection_lost.
        self._task_handler: asyncio.Task[None] | None = None
        #: The task sending a large body; no request is read while it runs.
        self._sending: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last = 0.0
        #: Flow control: the transport's buffer is full (`pause_writing`).
        self._paused = False
        #: Reading stopped until the client reads what was written (pipelining).
        self._blocked = False
        self._drained: asyncio.Future[None] | None = None
        #: aiohttp asked us to stop (a shutdown): the answer under way ends, no more.
        self._closing = False
        #: A dup of the connection's socket for direct writes (None until the first).
        self._out: socket.socket | None = None
        self.transport: asyncio.Transport | None = None

    # --- what aiohttp's Server expects of a connection (shutdown, close) ---------------

    def close(self) -> None:
        """aiohttp's meaning: no further request; an answer under way is finished first."""
        self._closing = True
        if self.transport is not None and self._sending is None:
            self.transport.close()

    def force_close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp API)
        if self._sending is not None:
            # A body under way ends first (bounded by aiohttp's grace period).
            try:
                await asyncio.wait_for(asyncio.shield(self._sending), timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
        self.force_close()

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
        if self._sending is not None:
            self._sending.cancel()
        self._wake(ConnectionResetError("connection lost"))
        if self._out is not None:
            self._out.close()
            self._out = None
        self._server.connection_lost(self, exc)  # type: ignore[arg-type]
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)
        if self._blocked and self.transport is not None:
            self._blocked = False
            self.transport.resume_reading()
            self._process()

    def _wake(self, exc: Exception | None) -> None:
        fut, self._drained = self._drained, None
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

    async def _drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client went away")
        if not self._paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def _check_idle(self) -> None:
        # One deadline for an idle keep-alive connection and for a client still dribbling
        # its request head: bytes arriving do not push it back, only a whole request does.
        # A timestamp per request and one timer per period, not a timer per request.
        loop = asyncio.get_running_loop()
        left = self._last + self._timeout - loop.time()
        if self._sending is not None:
            left = self._timeout  # a body under way has its own send timeout
        if left <= 0:
            self.close()
        else:
            self._idle = loop.call_later(left, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._closing:
            return
        if self._sending is None and not self._blocked:
            self._process()

    def _process(self) -> None:
        edge = self._edge
        limit = edge.settings.max_header_bytes
        while self.transport is not None:
            if self._paused:
                # A client pipelining faster than it reads: read on once it has read.
                self._blocked = True
                self.transport.pause_reading()
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
                answer(edge, head.method, head.target, head.headers, head.keep_alive,
                       allow_large=True)
                if head is not None
                else None
            )
            if reply is None or head is None:
                self._hand_off()
                return
            del self._buf[: end + 4]
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._last = asyncio.get_running_loop().time()
            if isinstance(reply, Large):
                rest = self._send_now(reply)
                if rest is None:
                    if not head.keep_alive:
                        self.transport.close()
                        return
                    continue
                self.transport.pause_reading()
                self._sending = asyncio.get_running_loop().create_task(
                    self._send_large(reply, head.keep_alive, rest)
                )
                return
            self.transport.write(reply)
            if not head.keep_alive:
                self.transport.close()
                return

    def _send_now(self, large: Large) -> tuple[int, int] | None:
        """Try the whole answer at once, without a task: head (MSG_MORE, so it leaves
        with the body) and one sendfile straight to the socket. None when all went;
        else (head bytes sent, body bytes sent) for `_send_large` to go on from, or
        (-1, 0) when this connection cannot take direct writes now."""
        transport = self.transport
        assert transport is not None
        plan = large.plan
        if self._out is None:
            sock = direct_socket(transport)
            if sock is None:
                return (-1, 0)
            self._out = socket.socket(fileno=os.dup(sock.fileno()))
        if transport.get_write_buffer_size() or (plan.has_body and plan.multipart is not None):
            return (-1, 0)
        try:
            fd = os.open(large.file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return (-1, 0)  # the task aborts the connection
        head, done = large.head, 0
        try:
            try:
                sent = self._out.send(head, socket.MSG_MORE if plan.has_body else 0)
            except BlockingIOError:
                return (0, 0)
            if sent < len(head) or not plan.has_body:
                return None if sent == len(head) else (sent, 0)
            r = plan.spans[0]
            while done < r.length:
                n = os.sendfile(self._out.fileno(), fd, r.first + done, r.length - done)
                if n == 0:
                    raise EOFError("file ended early")
                done += n
        except BlockingIOError:
            return (len(head), done)
        except (OSError, EOFError):
            transport.abort()  # the head promised a length we cannot deliver
            return None
        finally:
            os.close(fd)
        return None

    async def _send_large(self, large: Large, keep_alive: bool, rest: tuple[int, int]) -> None:
        transport = self.transport
        assert transport is not None
        try:
            fd = os.open(large.file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            transport.abort()  # counted as a hit already; evicted between stat and open
            return
        try:
            head_sent, body_sent = rest
            if head_sent < 0:
                await send_head_and_body(transport, large.head, fd, large.plan, self._drain)
            else:
                assert self._out is not None
                sink = SocketSink(self._out.fileno())
                try:
                    await sink.write(large.head[head_sent:])
                    if large.plan.has_body:
                        r = large.plan.spans[0]
                        await sink.span(fd, r.first + body_sent, r.length - body_sent)
                finally:
                    sink.close()
        except (OSError, EOFError, TimeoutError):
            # The head promised a length we cannot deliver (RFC 9112 §6.3).
            transport.abort()
            return
        finally:
            os.close(fd)
            self._sending = None
        if self.transport is None:
            return
        if not keep_alive or self._closing:
            self.transport.close()
            return
        self._last = asyncio.get_running_loop().time()
        self.transport.resume_reading()
        self._process()

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
        plan = plan_response(
            method,
            hdrs,
            size=entry.size,
            etag=entry.etag,
            last_modified=entry.last_modified,
            content_type=entry.content_type,
        )
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
    body = _read(path, entry.size)
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
        return None

    install_hook(server, hit)
