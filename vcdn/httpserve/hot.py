"""Hot representations and the request-level hook: hits on connections aiohttp owns.

Open Connect keeps its hottest files in memory; in Python the cost per request is the
framework's (request object, router, middlewares, response object, header
serialisation), not the bytes'. Hits are answered by the hit connection protocol
(`vcdn.httpserve.hitproto`) with the one planner (`vcdn.httpserve.hit`); a connection
handed to aiohttp (after a miss, or odd framing) keeps getting the same answers through
`install_answer`, the one hook that sees every keep-alive HTTP/1.1 GET/HEAD before
aiohttp routes it. HTTP/1.0 and other methods fall through to the application.

`HotEntry` is a hot file of the origin (in RAM, or on disk with its opener) and
`HotCache` the RAM tier (`vcdn.httpserve.ram`) that holds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from vcdn.errors import VcdnError
from vcdn.httpserve.body import SEND_TIMEOUT, send_head_and_body
from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.hit import Answer, Large, OpenFile, Prepared
from vcdn.httpserve.middleware import CLIENT_CLOSED
from vcdn.httpserve.plan import Plan
from vcdn.httpserve.ram import RamTier
from vcdn.httpserve.wire import StoredHead

#: Answers buffered in the transport beyond this wait for the client to read (flow control).
DRAIN_ABOVE: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class HotEntry:
    """A hot representation of the origin: in RAM (`body`) or on disk (`open_file`).

    `prepared` is what the hit planner (`vcdn.httpserve.hit`) keeps per representation.
    """

    body: bytes | None
    size: int
    etag: str
    last_modified: float | None
    content_type: str
    prepared: Prepared
    stamp: Any  # the owner's validator, e.g. (inode, size, mtime_ns)
    checked: float  # monotonic time the owner last validated it
    open_file: OpenFile

    def revalidated(self, now: float) -> HotEntry:
        return dataclasses.replace(self, checked=now)

    @property
    def cost(self) -> int:
        """Bytes of RAM this entry holds."""
        p = self.prepared
        return len(p.plain) + len(p.stored.fixed) + (len(self.body) if self.body else 0) + 400


def build_entry(
    body: bytes | None,
    *,
    etag: str,
    last_modified: float | None,
    content_type: str,
    cache_control: str | None,
    stamp: Any,
    open_file: OpenFile,
    size: int | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    now: float | None = None,
) -> HotEntry:
    """An entry whose answers carry the same fields `vcdn.httpserve.send` would send.

    Give `body` (kept in RAM), or None with `size` (served from disk through `open_file`).
    """
    if body is None and size is None:
        raise ValueError("a file-backed entry needs its size")
    length = len(body) if body is not None else size
    assert length is not None
    prepared = Prepared.fields(
        StoredHead.of(extra_headers, cache_control), size=length, etag=etag,
        last_modified=last_modified, content_type=content_type,
    )
    return HotEntry(
        body=body,
        size=length,
        etag=etag,
        last_modified=last_modified,
        content_type=content_type,
        prepared=prepared,
        stamp=stamp,
        checked=time.monotonic() if now is None else now,
        open_file=open_file,
    )


class HotCache(RamTier[HotEntry]):
    """The RAM tier of `HotEntry` by key (the raw request path)."""

    __slots__ = ()

    def put(self, key: str, entry: HotEntry, cost: int = 0, *, body: int = 0) -> None:  # type: ignore[override]
        super().put(key, entry, entry.cost, body=len(entry.body) if entry.body else 0)


class AlreadySent(web.StreamResponse):
    """Tells aiohttp the response went out already, and whether the connection stays open."""

    def __init__(self, status: int, length: int, *, keep_alive: bool = True) -> None:
        super().__init__(status=status)
        self._sent_length = length
        self._still_open = keep_alive

    async def prepare(self, request: web.BaseRequest) -> None:  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None

    @property
    def keep_alive(self) -> bool:
        return self._still_open

    @property
    def content_length(self) -> int:  # type: ignore[override]
        return self._sent_length


#: An owner's hit answer on a request aiohttp parsed: sent (`AlreadySent`) or None (route it).
HitAnswer = Callable[[web.BaseRequest, asyncio.Transport], Awaitable[AlreadySent | None]]


def install_hook(server: web.Server, answer: HitAnswer) -> None:
    """The one request-level hook: `answer` sees every keep-alive HTTP/1.1 GET/HEAD before
    aiohttp routes it. Call after ``runner.setup()`` and before the site starts: aiohttp's
    per-connection handlers copy ``server.request_handler`` when they are created."""
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
                try:
                    sent = await answer(request, transport)  # type: ignore[arg-type]
                    if sent is not None and transport.get_write_buffer_size() > DRAIN_ABOVE:
                        # Flow control: a client pipelining requests without reading must
                        # not make us buffer answers without bound (aiohttp's drain).
                        await asyncio.wait_for(request.writer.drain(), SEND_TIMEOUT)
                except (ConnectionError, TimeoutError):  # the client left or stopped reading
                    transport.abort()
                    sent = AlreadySent(CLIENT_CLOSED, 0, keep_alive=False)
                if sent is not None:
                    return sent
        return await slow(request)

    server.request_handler = handler


def install_answer(server: web.Server, answer: Answer) -> None:
    """The owner's hit answers (the same as the hit protocol's) for requests aiohttp
    parsed; a `Large` goes out with sendfile, or pread and write over TLS."""

    async def hit(request: web.BaseRequest, transport: asyncio.Transport) -> AlreadySent | None:
        reply = answer(Head(request.method, request.raw_path, request.headers, True))
        return None if reply is None else await send_reply(request, transport, reply)

    install_hook(server, hit)


async def send_reply(
    request: web.BaseRequest, transport: asyncio.Transport, reply: bytes | Large,
    *, keep_alive: bool = True, plan: Plan | None = None,
) -> AlreadySent:
    """Send a planned answer (`vcdn.httpserve.hit.deliver`) on a connection aiohttp owns
    and tell aiohttp it went out (with `plan`, its status and body length, for the
    owner's metrics); raises `ConnectionResetError` (the connection aborted) when the
    body cannot be delivered."""
    if isinstance(reply, bytes):
        transport.write(reply)
        if plan is not None:
            length = plan.content_length if plan.has_body else 0
            return AlreadySent(plan.status, length, keep_alive=keep_alive)
        return AlreadySent(200, len(reply), keep_alive=keep_alive)
    plan = reply.plan
    try:
        fd = reply.open_file()
    except (OSError, VcdnError):
        transport.abort()  # counted as a hit already; the file went between look and open
        raise ConnectionResetError("file gone while being sent") from None
    try:
        await send_head_and_body(transport, reply.head, fd, plan, request.writer.drain)
    except (OSError, EOFError, TimeoutError) as exc:
        # The head promised a length we cannot deliver (RFC 9112 §6.3).
        transport.abort()
        raise ConnectionResetError(f"response body aborted: {exc}") from None
    finally:
        os.close(fd)
    return AlreadySent(plan.status, plan.content_length, keep_alive=keep_alive)
