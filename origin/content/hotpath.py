"""The origin's hot files: filled by the normal handler, answered by the one hit planner
(`vcdn.httpserve.hit`) in the hit connection protocol, re-checked against the disk at
most once a second.

A file rewritten or republished (new inode, size, mtime or manifest checksum) drops out
of RAM at the next check and the normal handler serves and re-caches it; a deleted file
drops out and gets its 404. Opens for re-checks go through `open_under`, like requests.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from origin.content.catalog import Catalog
from origin.content.metrics import OriginMetrics
from vcdn.errors import NotFound
from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.hit import Large, deliver, plan_hit
from vcdn.httpserve.hot import HotCache, HotEntry, build_entry, send_reply
from vcdn.httpserve.paths import open_under

RECHECK_SECONDS: Final = 1.0


class OriginHot:
    def __init__(
        self, cache: HotCache, root: Path, catalog: Catalog, metrics: OriginMetrics
    ) -> None:
        self.cache = cache
        self.root = root
        self.catalog = catalog
        self.metrics = metrics
        self.root_fd = -1  # set while the app runs

    def answer(self, head: Head) -> bytes | Large | None:
        """The origin's `vcdn.httpserve.hit.Answer`: a hot file's answer, or None."""
        entry = self.lookup(head.target)
        if entry is None:
            return None
        data, plan = plan_hit(head.method, head.headers, entry, entry.prepared, time.time(),
                              keep_alive=head.keep_alive)
        reply = deliver(data, plan, entry.body, entry.open_file)
        if reply is not None:
            self.metrics.count(plan.status, plan.content_length if plan.has_body else 0,
                               hot=True)
        return reply

    def in_ram(self, request: web.BaseRequest, size: int) -> bool:
        """Whether to read this file whole and keep it in RAM."""
        return self.eligible(request) and size <= self.cache.object_max

    def eligible(self, request: web.BaseRequest) -> bool:
        return (
            self.cache.capacity > 0
            and request.method in ("GET", "HEAD")
            and "?" not in request.raw_path
        )

    def remember(
        self,
        request: web.BaseRequest,
        title: str,
        inner: str,
        st: os.stat_result,
        body: bytes | None,
        *,
        etag: str,
        content_type: str,
        cache_control: str,
    ) -> HotEntry:
        rel = f"{title}/{inner}"
        entry = build_entry(
            body,
            size=st.st_size,
            open_file=lambda: open_under(self.root, self.root_fd, rel),
            etag=etag,
            last_modified=st.st_mtime,
            content_type=content_type,
            cache_control=cache_control,
            stamp=(title, inner, st.st_ino, st.st_size, st.st_mtime_ns),
        )
        self.cache.put(request.raw_path, entry)
        return entry

    async def send(self, request: web.BaseRequest, entry: HotEntry) -> web.StreamResponse | None:
        """The first answer of a file just remembered, through the same pipeline as its
        hits (the same bytes); None when it cannot go that way (the caller sends it)."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        keep_alive = request.keep_alive and request.version == HttpVersion11
        data, plan = plan_hit(request.method, request.headers, entry, entry.prepared,
                              time.time(), keep_alive=keep_alive)
        reply = deliver(data, plan, entry.body, entry.open_file)
        if reply is None:
            return None
        return await send_reply(request, transport, reply, keep_alive=keep_alive, plan=plan)

    def lookup(self, key: str) -> HotEntry | None:
        """The entry of a raw request target, re-checked against the disk if due."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if now - entry.checked < RECHECK_SECONDS:
            return entry
        title, inner, ino, size, mtime_ns = entry.stamp
        try:
            fd = open_under(self.root, self.root_fd, f"{title}/{inner}")
        except NotFound:
            self.cache.discard(key)
            return None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if (st.st_ino, st.st_size, st.st_mtime_ns) != (ino, size, mtime_ns) or (
            self.catalog.etag(title, inner, st) != entry.etag
        ):
            self.cache.discard(key)
            return None
        entry = entry.revalidated(now)
        self.cache.replace(key, entry)
        return entry


def read_whole(fd: int, size: int) -> bytes:
    """A small file's bytes; NotFound if it is shorter than its stat said."""
    data = os.pread(fd, size, 0)
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            raise NotFound("File changed while being read.")
        data += more
    return data
