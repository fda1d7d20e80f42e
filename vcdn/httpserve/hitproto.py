"""The hit connection protocol of the origin and the edge: every hit answered without aiohttp.

Open Connect keeps hot small files in RAM and answers them with as little work as
possible; this is our version. A connection starts in `HitProtocol`. Each complete
request head is parsed by `vcdn.httpserve.fasthead` (narrow and pure) and answered by the
owner's `vcdn.httpserve.hit.Answer` (the edge's store, the origin's hot files). Bytes
(a playlist, an init segment, a 16 KiB segment, with their head) are written at once; a
`Large` goes out as the head (MSG_MORE) and one sendfile right here, and a task finishes
only what the socket did not take (through `vcdn.httpserve.body`: sendfile on a plain
socket, pread and write through the transport where there is none, as TLS needs).
No request is read while a task sends, so answers stay in order; a client that
pipelines without reading stops being read until it reads.

Anything else (a miss, a bad token, odd framing, another method) hands the connection,
with every unread byte, to aiohttp's RequestHandler, which keeps it from then on.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Final

from aiohttp import web

from vcdn.errors import VcdnError
from vcdn.httplimits import HEAD_TIMEOUT_RESPONSE, HttpLimits
from vcdn.httpserve.body import SocketSink, direct_socket, send_head_and_body
from vcdn.httpserve.fasthead import parse_head
from vcdn.httpserve.hit import Answer, Large

#: Called when a connection is handed to aiohttp (the owner counts hand-offs).
OnHandoff = Callable[[], None]


#: Over TLS, bodies up to this size go out with their head in one write, without a task.
WRITE_THROUGH_MAX: Final = 256 * 1024


class HitProtocol(asyncio.Protocol):
    __slots__ = (
        "_answer",
        "_blocked",
        "_buf",
        "_closing",
        "_drained",
        "_head_limit",
        "_head_timeout",
        "_head_timer",
        "_idle",
        "_last",
        "_loop",
        "_on_handoff",
        "_out",
        "_paused",
        "_sending",
        "_server",
        "_task_handler",
        "_timeout",
        "transport",
    )

    def __init__(
        self,
        server: web.Server,
        answer: Answer,
        limits: HttpLimits,
        on_handoff: OnHandoff | None = None,
    ) -> None:
        self._server = server
        self._answer = answer
        self._on_handoff = on_handoff
        self._head_limit = limits.max_header_bytes
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
        self._loop = asyncio.get_running_loop()
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
        self._loop = loop = asyncio.get_running_loop()
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
            self._drained = self._loop.create_future()
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
        if (self._buf or self._closing or self._sending is not None or self._blocked
                or self._paused or not data.endswith(b"\r\n\r\n")
                or data.find(b"\r\n\r\n") != len(data) - 4):
            self._buf += data
            if not self._closing and self._sending is None and not self._blocked:
                self._process()
            return
        # The common case: exactly one whole head and nothing buffered, answered without
        # going through the buffer.
        if self._respond(data[:-4]) is None:
            self._buf += data
            self._hand_off()

    def _process(self) -> None:
        limit = self._head_limit
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
                    self._head_timer = self._loop.call_later(
                        self._head_timeout, self._head_expired
                    )
                return
            more = self._respond(bytes(self._buf[:end]))
            if more is None:
                self._hand_off()
                return
            del self._buf[: end + 4]
            if not more:
                return

    def _respond(self, data: bytes) -> bool | None:
        """Answer one request head (without its blank line): None if it is not ours (the
        caller hands off, with the head still unread), else whether to read on."""
        transport = self.transport
        assert transport is not None
        head = parse_head(data, self._head_limit)
        reply = self._answer(head) if head is not None else None
        if reply is None or head is None:
            return None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._last = self._loop.time()
        if type(reply) is Large:
            rest = self._send_now(reply)
            if rest is not None:
                transport.pause_reading()
                self._sending = self._loop.create_task(
                    self._send_large(reply, head.keep_alive, rest)
                )
                return False
        else:
            transport.write(reply)  # type: ignore[arg-type]
        if not head.keep_alive:
            transport.close()
            return False
        return True

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
                return self._write_through(large)
            self._out = socket.socket(fileno=os.dup(sock.fileno()))
        if transport.get_write_buffer_size() or (plan.has_body and plan.multipart is not None):
            return (-1, 0)
        try:
            fd = large.open_file()
        except (OSError, VcdnError):
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

    def _write_through(self, large: Large) -> tuple[int, int] | None:
        """No socket to write to (TLS): a body of one span up to `WRITE_THROUGH_MAX` (a
        64 KiB range) is read with one pread and written with its head in one write,
        without a task; (-1, 0) for `_send_large` otherwise. Flow control holds: if the
        write fills the transport's buffer, `_process` stops reading until it drains."""
        transport = self.transport
        assert transport is not None
        plan = large.plan
        if self._paused or plan.multipart is not None or (
                plan.has_body and plan.spans[0].length > WRITE_THROUGH_MAX):
            return (-1, 0)
        if not plan.has_body:
            transport.write(large.head)
            return None
        try:
            fd = large.open_file()
        except (OSError, VcdnError):
            return (-1, 0)  # the task aborts the connection
        r = plan.spans[0]
        try:
            data = os.pread(fd, r.length, r.first)
        except OSError:
            data = b""
        finally:
            os.close(fd)
        if len(data) != r.length:
            transport.abort()  # the head promised a length we cannot deliver
            return None
        transport.write(large.head + data)
        return None

    async def _send_large(self, large: Large, keep_alive: bool, rest: tuple[int, int]) -> None:
        transport = self.transport
        assert transport is not None
        try:
            fd = large.open_file()
        except (OSError, VcdnError):
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
        self._last = self._loop.time()
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
        if self._on_handoff is not None:
            self._on_handoff()
        handler = self._server()
        self.transport = None
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buf:
            handler.data_received(bytes(self._buf))
        self._buf.clear()
