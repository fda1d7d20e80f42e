"""The fast path for hot objects: answers built without routing, small ones prebuilt in RAM.

Open Connect keeps its hottest files in memory; in Python the cost per request is the
framework's (request object, router, middlewares, response object, header
serialisation), not the bytes'. So a GET/HEAD over a keep-alive HTTP/1.1 connection for
an object the owner's `lookup` knows is answered here, before aiohttp routes it:

* small objects held in RAM, plain request (no Range, no conditional): the status line
  and fields were serialised when the object entered the cache; a hit is one
  ``transport.write`` of ``head + Date + body``;
* any other request on a known object (ranges, conditionals, HEAD, large files kept on
  disk): the same pure planner as the normal path (`vcdn.httpserve.plan`), its fields
  serialised here next to the precomputed ones, the body from RAM, from ``pread`` or
  with sendfile (`vcdn.httpserve.send.send_direct`).

HTTP/1.0, ``Connection: close``, other methods and unknown paths fall through to the
normal aiohttp application, which sends the same fields.

    cache = HotCache(capacity=64 << 20, object_max=256 << 10)
    install_fast_path(runner.server, lookup)   # after runner.setup(), before site.start()

`lookup(request) -> HotEntry | None` is the owner's: it decides what is hot and when an
entry is stale (the origin re-stats a file at most once per second). Heads come from the
one serialiser (`vcdn.httpserve.wire`), the RAM from the one tier (`vcdn.httpserve.ram`),
and `install_hook` is the one request-level hook the edge uses too.
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
from vcdn.httpserve.middleware import CLIENT_CLOSED
from vcdn.httpserve.plan import Plan, plan_stored
from vcdn.httpserve.ram import RamTier
from vcdn.httpserve.send import (
    SEND_TIMEOUT,
    SMALL_BODY,
    direct_socket,
    read_spans,
    send_direct,
)
from vcdn.httpserve.validators import format_http_date
from vcdn.httpserve.wire import StoredHead, head_prefix, head_tail

#: Answers buffered in the transport beyond this wait for the client to read (flow control).
DRAIN_ABOVE: Final = 256 * 1024
#: A request carrying any of these needs the planner (RFC 9110 §13, §14), not the prebuilt head.
NEEDS_PLANNER: Final = (
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"
)


@dataclass(frozen=True, slots=True)
class HotEntry:
    """A hot representation: in RAM (`body`) or on disk (`open_file` opens it).

    `head` is the prebuilt plain 200 without its per-answer tail; `stored` what every
    other answer (206, 304, ...) adds to what the planner decides.
    """

    head: bytes
    body: bytes | None
    size: int
    etag: str
    last_modified: float | None
    content_type: str
    stored: StoredHead
    stamp: Any  # the owner's validator, e.g. (inode, size, mtime_ns)
    checked: float  # monotonic time the owner last validated it
    open_file: Callable[[], int] | None = None

    def revalidated(self, now: float) -> HotEntry:
        return dataclasses.replace(self, checked=now)

    @property
    def cost(self) -> int:
        """Bytes of RAM this entry holds."""
        return len(self.head) + len(self.stored.fixed) + (len(self.body) if self.body else 0) + 200

    def plan(self, method: str, headers: Any) -> Plan:
        return plan_stored(method, headers, self)


def build_entry(
    body: bytes | None,
    *,
    etag: str,
    last_modified: float | None,
    content_type: str,
    cache_control: str | None,
    stamp: Any,
    size: int | None = None,
    open_file: Callable[[], int] | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    now: float | None = None,
) -> HotEntry:
    """An entry whose answers carry the same fields `vcdn.httpserve.send` would send.

    Give `body` (kept in RAM), or None with `size` and `open_file` (served from disk).
    """
    if body is None and (size is None or open_file is None):
        raise ValueError("a file-backed entry needs size and open_file")
    length = len(body) if body is not None else size
    assert length is not None
    stored = StoredHead.of(extra_headers, cache_control)
    validators = [("Accept-Ranges", "bytes"), ("ETag", etag)]
    if last_modified is not None:
        validators.append(("Last-Modified", format_http_date(int(last_modified))))
    validators += [("Content-Type", content_type), ("Content-Length", str(length))]
    head = head_prefix(Plan(200, tuple(validators), content_length=length), stored)
    return HotEntry(
        head=head,
        body=body,
        size=length,
        etag=etag,
        last_modified=last_modified,
        content_type=content_type,
        stored=stored,
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


Lookup = Callable[[web.BaseRequest], HotEntry | None]
#: Called after a fast-path answer: (request, status, body bytes sent).
OnSent = Callable[[web.BaseRequest, int, int], None]


def install_fast_path(server: web.Server, lookup: Lookup, on_sent: OnSent | None = None) -> None:
    """Answer GET/HEAD of hot objects from `lookup` before aiohttp routes them."""

    async def answer(request: web.BaseRequest, transport: asyncio.Transport) -> AlreadySent | None:
        entry = lookup(request)
        if entry is None:
            return None
        sent = await _answer(request, transport, entry, time.time())
        if sent is not None and on_sent is not None:
            on_sent(request, sent.status, sent.content_length)
        return sent

    install_hook(server, answer)


def _plain(headers: Any) -> bool:
    """No field of `NEEDS_PLANNER` (unrolled: case-insensitive lookups, no generator)."""
    get = headers.get
    return (
        get("Range") is None
        and get("If-None-Match") is None
        and get("If-Modified-Since") is None
        and get("If-Match") is None
        and get("If-Unmodified-Since") is None
        and get("If-Range") is None
    )


async def _answer(
    request: web.BaseRequest, transport: asyncio.Transport, entry: HotEntry, now: float
) -> AlreadySent | None:
    """Send the answer; None when the entry's file vanished (the slow path will 404)."""
    headers = request.headers
    head_only = request.method == "HEAD"
    if entry.body is not None and _plain(headers):
        # The commonest request of all: one write of prebuilt bytes.
        if head_only:
            transport.write(entry.head + head_tail(now))
            return AlreadySent(200, 0)
        transport.write(b"".join((entry.head, head_tail(now), entry.body)))
        return AlreadySent(200, entry.size)
    plan = entry.plan(request.method, headers)
    head = head_prefix(plan, entry.stored) + head_tail(now)
    if not plan.has_body:
        transport.write(head)
        return AlreadySent(plan.status, 0)
    if entry.body is not None:
        if plan.multipart is not None:
            transport.write(head + plan.multipart.assemble(entry.body))
        else:
            r = plan.spans[0]
            transport.write(b"".join((head, memoryview(entry.body)[r.first : r.last + 1])))
        return AlreadySent(plan.status, plan.content_length)
    assert entry.open_file is not None
    try:
        fd = entry.open_file()
    except VcdnError:
        return None
    try:
        sock = direct_socket(transport)
        if plan.content_length <= SMALL_BODY or sock is None:
            if plan.content_length > SMALL_BODY:
                return None  # TLS and large: let aiohttp stream it
            try:
                data = read_spans(fd, plan)
            except VcdnError:
                return None  # changed under us: the normal path re-reads and re-plans
            transport.write(head + data)
        else:
            await send_direct(
                transport, request.writer, sock, fd, plan, lambda: transport.write(head)
            )
    finally:
        os.close(fd)
    return AlreadySent(plan.status, plan.content_length)
