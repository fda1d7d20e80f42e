"""Writing a planned body (`vcdn.httpserve.plan.Plan`) from a file: one writer, two sinks.

`write_body(sink, fd, plan)` sends the plan's spans (and multipart framing) in order to a
sink with two operations, ``write(bytes)`` and ``span(fd, offset, count)``:

* `SocketSink` writes straight to a plain TCP socket, spans with ``sendfile(2)``: the
  kernel copies page cache to socket, nothing passes through Python;
* `TransportSink` reads spans with ``pread`` and writes them through an asyncio transport,
  waiting for the transport's flow control between chunks: what a TLS transport needs,
  since its bytes must pass through the TLS layer.

`send_head_and_body(transport, head, fd, plan, drain)` picks the sink. Both raise
`OSError`/`EOFError`/`TimeoutError` when the body cannot be delivered; the caller then
aborts the connection, since the head already promised a length (RFC 9112 §6.3).
`read_spans(fd, plan, head)` reads a small planned body whole, joined to its head.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from vcdn.errors import NotFound
from vcdn.httpserve.plan import Plan

#: One sendfile call sends at most this much, so one fast client cannot hog the loop.
SENDFILE_CHUNK: Final = 4 * 1024 * 1024
#: pread size when sendfile is impossible (TLS).
READ_CHUNK: Final = 256 * 1024
#: A client that accepts no byte for this long is cut off (slow-reader defence).
SEND_TIMEOUT: Final = 60.0

Drain = Callable[[], Awaitable[None]]


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def span(self, fd: int, offset: int, count: int) -> None: ...

    def close(self) -> None: ...


async def write_body(sink: Sink, fd: int, plan: Plan) -> None:
    if plan.multipart is None:
        r = plan.spans[0]
        await sink.span(fd, r.first, r.length)
        return
    for part in plan.multipart.parts:
        await sink.write(part.header)
        await sink.span(fd, part.range.first, part.range.length)
    await sink.write(plan.multipart.trailer)


def pread_exact(fd: int, count: int, offset: int) -> bytes:
    data = os.pread(fd, count, offset)
    while len(data) < count:
        more = os.pread(fd, count - len(data), offset + len(data))
        if not more:
            raise EOFError(f"file ended {count - len(data)} bytes early")
        data += more
    return data


def read_spans(fd: int, plan: Plan, head: bytes = b"") -> bytes:
    """`head` and the body of `plan` read from `fd` (multipart framing included), for
    small bodies, joined once; `NotFound` if the file is shorter than planned."""
    try:
        if plan.multipart is None:
            r = plan.spans[0]
            chunks = [head, pread_exact(fd, r.length, r.first)]
        else:
            chunks = [head]
            for part in plan.multipart.parts:
                chunks.append(part.header)
                chunks.append(pread_exact(fd, part.range.length, part.range.first))
            chunks.append(plan.multipart.trailer)
    except (OSError, EOFError) as exc:
        raise NotFound(f"File cannot be read: {exc}.") from None
    return b"".join(chunks)


def direct_socket(transport: asyncio.BaseTransport | None) -> Any:
    """The transport's socket if bodies may be written to it directly (not TLS), else None."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    return transport.get_extra_info("socket")


def cork(sock: object, on: int) -> None:
    """TCP_CORK (nginx's tcp_nopush): head and body leave in full segments."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, on)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass  # not TCP (a Unix socket in tests) or already closed


class SocketSink:
    """Writes bytes and file spans straight to a non-blocking socket fd.

    Writability is awaited on a lazily made ``dup`` of the fd, because event loops refuse
    ``add_writer`` on an fd that belongs to a transport; the dup shares the socket. The
    transport's own buffer must be empty before the first write (bytes in order).
    """

    __slots__ = ("_dup", "_fd", "_loop", "sendfile_calls")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._dup = -1
        self._loop = asyncio.get_running_loop()
        self.sendfile_calls = 0

    def close(self) -> None:
        if self._dup >= 0:
            os.close(self._dup)
            self._dup = -1

    async def _writable(self) -> None:
        if self._dup < 0:
            self._dup = os.dup(self._fd)
        fut = self._loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_writer(self._dup, ready)
        try:
            await asyncio.wait_for(fut, SEND_TIMEOUT)
        finally:
            self._loop.remove_writer(self._dup)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            view = view[n:]

    async def span(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            try:
                n = os.sendfile(self._fd, fd, offset, min(count, SENDFILE_CHUNK))
            except BlockingIOError:
                await self._writable()
                continue
            self.sendfile_calls += 1
            if n == 0:
                raise EOFError(f"file ended {count} bytes early")
            offset += n
            count -= n


class TransportSink:
    """pread + ``transport.write``, waiting on `drain` (the protocol's flow control)
    after each chunk: for transports without a usable socket fd (TLS).

    `head` (the response head) goes out in one write with the first bytes of the body:
    over TLS each write is a trip through the TLS layer and a send of its own, so a 64
    KiB range costs one of each instead of two. The wait is bounded with
    `asyncio.timeout`, not `wait_for`, which would make a task per chunk."""

    __slots__ = ("_drain", "_head", "_transport")

    def __init__(self, transport: asyncio.WriteTransport, drain: Drain, head: bytes = b"") -> None:
        self._transport = transport
        self._drain = drain
        self._head = head

    def close(self) -> None:
        return None

    async def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self._head:
            data, self._head = self._head + data, b""
        self._transport.write(data)
        async with asyncio.timeout(SEND_TIMEOUT):
            await self._drain()

    async def span(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            data = os.pread(fd, min(count, READ_CHUNK), offset)
            if not data:
                raise EOFError(f"file ended {count} bytes early")
            await self.write(data)
            offset += len(data)
            count -= len(data)


async def flushed(transport: asyncio.WriteTransport, drain: Drain) -> None:
    """Wait until `transport` has handed every buffered byte to the kernel, so direct
    writes to its socket come after them. A zero high-water mark makes the transport
    pause its protocol until the buffer is empty and resume it then: `drain` (the
    protocol's wait for resume) returns exactly then."""
    if not transport.get_write_buffer_size():
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        await asyncio.wait_for(drain(), SEND_TIMEOUT)
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits(high=high, low=low)


async def send_head_and_body(
    transport: asyncio.WriteTransport, head: bytes, fd: int, plan: Plan, drain: Drain
) -> None:
    """The whole answer: sendfile where the transport has a plain socket, else pread and
    write through it. Raises as the sinks do; the caller aborts the connection."""
    sock = direct_socket(transport)
    if sock is None:
        if plan.has_body:
            await write_body(TransportSink(transport, drain, head), fd, plan)
        else:
            transport.write(head)
        return
    cork(sock, 1)
    try:
        transport.write(head)
        if not plan.has_body:
            return
        await flushed(transport, drain)
        # A dup of the socket: if the transport closes its fd meanwhile, ours stays the
        # same socket (never a newly reused fd number) and the writes simply fail.
        out = os.dup(sock.fileno())
        sink = SocketSink(out)
        try:
            await write_body(sink, fd, plan)
        finally:
            sink.close()
            os.close(out)
    finally:
        cork(sock, 0)
