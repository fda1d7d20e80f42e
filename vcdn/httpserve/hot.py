"""The fast path for hot small objects: whole responses prebuilt in RAM, sent without routing.

Open Connect keeps its hottest files in memory; Python's cost per request is dominated by
the framework (request object, router, middlewares, header serialisation), not by the
bytes. So for the commonest request of all — a plain ``GET``/``HEAD`` of a small object
over a keep-alive HTTP/1.1 connection, with no Range and no conditional header — the
status line and header fields are serialised once, when the object enters the cache, and
a hit is one ``transport.write`` of ``head + Date + body``. Everything else (ranges,
conditionals, HTTP/1.0, ``Connection: close``, misses) falls through to the normal
aiohttp application, which produces byte-identical header fields.

    cache = HotCache(capacity=64 << 20, object_max=256 << 10)
    install_fast_path(runner.server, lookup)   # after runner.setup(), before site.start()

`lookup(request) -> HotEntry | None` is the owner's: it decides what is hot and when an
entry is stale (the origin re-stats a file at most once per second). ``Date`` is rebuilt
once per second, as uvicorn does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.send import SERVER
from vcdn.httpserve.validators import format_http_date

#: A request carrying any of these needs the planner (RFC 9110 §13, §14), not the fast path.
NEEDS_PLANNER: Final = (
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"
)


@dataclass(frozen=True, slots=True)
class HotEntry:
    """A prebuilt 200: `head` ends with ``Date: `` so the current date can be appended."""

    head: bytes
    body: bytes
    etag: str
    stamp: Any  # the owner's validator, e.g. (inode, size, mtime_ns)
    checked: float  # monotonic time the owner last validated it

    def revalidated(self, now: float) -> HotEntry:
        return HotEntry(self.head, self.body, self.etag, self.stamp, now)


def build_entry(
    body: bytes,
    *,
    etag: str,
    last_modified: float | None,
    content_type: str,
    cache_control: str | None,
    stamp: Any,
    extra_headers: Iterable[tuple[str, str]] = (),
    now: float | None = None,
) -> HotEntry:
    """The same header fields `vcdn.httpserve.send` would send for a plain 200."""
    fields = [("Accept-Ranges", "bytes"), ("ETag", etag)]
    if last_modified is not None:
        fields.append(("Last-Modified", format_http_date(int(last_modified))))
    fields += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    fields += list(RESPONSE_HEADERS)
    if cache_control:
        fields.append(("Cache-Control", cache_control))
    fields += [*extra_headers, ("Server", SERVER)]
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "Date: "
    return HotEntry(
        head.encode("latin-1"), body, etag, stamp, time.monotonic() if now is None else now
    )


class HotCache:
    """Byte-bounded LRU of `HotEntry` by key (the raw request path)."""

    __slots__ = ("_items", "capacity", "object_max", "used")

    def __init__(self, capacity: int, object_max: int) -> None:
        self.capacity = capacity
        self.object_max = object_max
        self.used = 0
        self._items: OrderedDict[str, HotEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> HotEntry | None:
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    def put(self, key: str, entry: HotEntry) -> None:
        size = len(entry.body) + len(entry.head)
        if len(entry.body) > self.object_max or size > self.capacity:
            return
        self.discard(key)
        self._items[key] = entry
        self.used += size
        while self.used > self.capacity:
            _, old = self._items.popitem(last=False)
            self.used -= len(old.body) + len(old.head)

    def replace(self, key: str, entry: HotEntry) -> None:
        """Swap an entry for its revalidated copy (same size) without touching LRU order."""
        if key in self._items:
            self._items[key] = entry

    def discard(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= len(old.body) + len(old.head)

    def clear(self) -> None:
        self._items.clear()
        self.used = 0


class _Date:
    """The Date field value, formatted once per second (RFC 9110 §6.6.1)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii") + b"\r\n\r\n"
        return self._value


class _AlreadySent(web.StreamResponse):
    """Tells aiohttp the response went out already, and the connection stays open."""

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


Lookup = Callable[[web.BaseRequest], HotEntry | None]
OnSent = Callable[[web.BaseRequest, HotEntry], None]


def install_fast_path(server: web.Server, lookup: Lookup, on_sent: OnSent | None = None) -> None:
    """Answer eligible requests from `lookup` before aiohttp routes them.

    Call after ``runner.setup()`` and before the site starts: aiohttp's per-connection
    handlers copy ``server.request_handler`` when they are created.
    """
    slow: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] = server.request_handler
    date = _Date()

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        if (method == "GET" or method == "HEAD") and request.version == HttpVersion11:
            headers = request.headers
            if request.keep_alive and not any(name in headers for name in NEEDS_PLANNER):
                entry = lookup(request)
                transport = request.transport
                if entry is not None and transport is not None and not transport.is_closing():
                    if method == "GET":
                        transport.write(b"".join((entry.head, date(), entry.body)))
                    else:
                        transport.write(entry.head + date())
                    if on_sent is not None:
                        on_sent(request, entry)
                    return _AlreadySent(len(entry.body) if method == "GET" else 0)
        return await slow(request)

    server.request_handler = handler
