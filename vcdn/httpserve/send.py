"""The aiohttp adapter: answer a GET/HEAD of a file or of bytes held in RAM.

``send_file(request, path, size=, etag=, last_modified=, content_type=, cache_control=)``
plans the response (`vcdn.httpserve.plan`), then sends it:

* no body (HEAD, 304, 412, 416): headers only;
* small bodies (≤ `SMALL_BODY`): read with one ``pread`` per span and returned as a
  `web.Response` that aiohttp writes with the headers in a single system call once the
  handler returns it (so return what these functions return); a sendfile dance costs
  more than that for a playlist or an init segment;
* larger bodies: the headers go out through aiohttp's writer, then every span (and every
  multipart part header) is written straight to the socket, spans with ``sendfile(2)``.

Why not aiohttp's FileResponse: it relies on ``loop.sendfile``, which uvloop does not
have, so under uvloop it falls back to 256 KiB reads in a thread pool and halves
large-file throughput. Here the socket's fd is taken from the transport and
``os.sendfile`` loops on it whatever the event loop; on EAGAIN we wait for writability
on a ``dup`` of the fd (event loops refuse ``add_writer`` on a transport's own fd).
While we write, aiohttp's writer is idle: the headers were flushed from the transport
before the first direct write, so bytes can never be reordered. TLS transports have no
usable socket fd and get the chunked fallback.

``send_bytes(request, body, ...)`` is the same for an object held in RAM (an edge's hot
small objects); with ``plan=`` a caller that already planned (e.g. to count a 304)
skips re-planning. Every response carries CORS, Cache-Control (not on 412/416),
Accept-Ranges and, from aiohttp, Date.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from typing import Any, Final

from aiohttp import web

from vcdn.errors import NotFound
from vcdn.httpserve.body import (
    READ_CHUNK,
    SEND_TIMEOUT,
    SocketSink,
    cork,
    direct_socket,
    flushed,
    pread_exact,
    read_spans,
    write_body,
)
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.plan import Plan, plan_response
from vcdn.httpserve.wire import SERVER

#: Bodies up to this size are read into memory and written with the headers at once.
SMALL_BODY: Final = 64 * 1024
__all__ = [
    "SEND_TIMEOUT", "SMALL_BODY", "direct_socket", "read_spans", "send_bytes", "send_file",
]
Headers = Iterable[tuple[str, str]]


def _headers(plan: Plan, cache_control: str | None, extra: Headers | None) -> dict[str, str]:
    headers = dict(plan.headers)
    headers.update(RESPONSE_HEADERS)
    if cache_control and plan.status in (200, 206, 304):
        headers["Cache-Control"] = cache_control
    if extra:
        headers.update(extra)
    headers.setdefault("Server", SERVER)
    return headers


def _response(plan: Plan, cache_control: str | None, extra: Headers | None) -> web.StreamResponse:
    # Content-Length is among plan.headers (except on 304), so aiohttp never chunks.
    return web.StreamResponse(status=plan.status, headers=_headers(plan, cache_control, extra))


def _whole(plan: Plan, body: bytes | None, cache_control: str | None,
           extra: Headers | None) -> web.Response:
    """A response aiohttp sends in one write (status line, headers and body together)
    once the handler returns it; HEAD and body-less statuses keep their Content-Length."""
    return web.Response(
        status=plan.status,
        headers=_headers(plan, cache_control, extra),
        body=body if plan.has_body else None,
    )


async def send_bytes(
    request: web.BaseRequest,
    body: bytes,
    *,
    etag: str | None,
    last_modified: float | None,
    content_type: str,
    cache_control: str | None,
    extra_headers: Headers | None = None,
    plan: Plan | None = None,
) -> web.StreamResponse:
    """Answer `request` with `body` (a whole representation held in RAM)."""
    if plan is None:
        plan = plan_response(
            request.method,
            request.headers,
            size=len(body),
            etag=etag,
            last_modified=last_modified,
            content_type=content_type,
        )
    if not plan.has_body:
        return _whole(plan, None, cache_control, extra_headers)
    if plan.multipart is not None:
        out = plan.multipart.assemble(body)
    elif plan.content_length == len(body):
        out = body
    else:
        r = plan.spans[0]
        out = body[r.first : r.last + 1]
    return _whole(plan, out, cache_control, extra_headers)


async def send_file(
    request: web.BaseRequest,
    path: str | os.PathLike[str] | int,
    *,
    size: int,
    etag: str | None,
    last_modified: float | None,
    content_type: str,
    cache_control: str | None,
    extra_headers: Headers | None = None,
    plan: Plan | None = None,
) -> web.StreamResponse:
    """Answer `request` with the file at `path` (or an open fd the caller keeps) of `size` bytes.

    Raises `NotFound` when the file cannot be opened. Once headers are out, a client that
    goes away or a file that turns out shorter than `size` aborts the connection and
    raises `ConnectionResetError` (`vcdn.httpserve.middleware.error_middleware` turns it
    into a quiet 499; without it aiohttp logs a traceback).
    """
    if plan is None:
        plan = plan_response(
            request.method,
            request.headers,
            size=size,
            etag=etag,
            last_modified=last_modified,
            content_type=content_type,
        )
    if not plan.has_body:
        return _whole(plan, None, cache_control, extra_headers)
    own_fd = not isinstance(path, int)
    if isinstance(path, int):
        fd = path
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            raise NotFound(f"No such file: {os.fspath(path)!r}.") from None
    try:
        if plan.content_length <= SMALL_BODY:
            return _whole(plan, read_spans(fd, plan), cache_control, extra_headers)
        resp = _response(plan, cache_control, extra_headers)
        await _send_large(request, resp, fd, plan)
        return resp
    finally:
        if own_fd:
            os.close(fd)


async def _send_large(
    request: web.BaseRequest, resp: web.StreamResponse, fd: int, plan: Plan
) -> None:
    writer = await resp.prepare(request)
    assert writer is not None
    transport = request.transport
    sock = direct_socket(transport)
    if transport is None or sock is None:
        await _send_fallback(resp, fd, plan)
        return

    def write_head() -> None:
        send_headers = getattr(writer, "send_headers", None)
        if send_headers is not None:
            send_headers()
        else:  # pragma: no cover - aiohttp < 3.12 wrote headers in prepare()
            pass

    await send_direct(transport, writer, sock, fd, plan, write_head)
    await resp.write_eof()


async def send_direct(
    transport: asyncio.BaseTransport,
    writer: Any,
    sock: Any,
    fd: int,
    plan: Plan,
    write_head: Callable[[], object],
) -> None:
    """Write the head through the transport, then the plan's spans straight to `sock`.

    Corked so head and body leave in full segments. The transport is drained before the
    first direct write, so bytes cannot be reordered.
    """
    cork(sock, 1)
    try:
        write_head()
        await flushed(transport, writer.drain)  # type: ignore[arg-type]
        sink = SocketSink(sock.fileno())
        try:
            await write_body(sink, fd, plan)
        except (OSError, EOFError, TimeoutError) as exc:
            # The head promised a length we cannot deliver: the connection must die
            # (RFC 9112 §6.3), or the client would read the next response as body.
            transport.abort()
            raise ConnectionResetError(f"response body aborted: {exc}") from None
        finally:
            sink.close()
    finally:
        cork(sock, 0)


async def _send_fallback(resp: web.StreamResponse, fd: int, plan: Plan) -> None:
    loop = asyncio.get_running_loop()

    async def copy(offset: int, count: int) -> None:
        while count > 0:
            n = min(count, READ_CHUNK)
            data = await loop.run_in_executor(None, pread_exact, fd, n, offset)
            await resp.write(data)
            offset += n
            count -= n

    if plan.multipart is None:
        r = plan.spans[0]
        await copy(r.first, r.length)
    else:
        for part in plan.multipart.parts:
            await resp.write(part.header)
            await copy(part.range.first, part.range.length)
        await resp.write(plan.multipart.trailer)
    await resp.write_eof()
