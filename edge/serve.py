"""Sending what is not a stored answer: growing fills (pread as bytes land) and relays.

Every answer from a stored object goes through the one hit pipeline (`edge.fastpath`,
`vcdn.httpserve.hit`). A growing fill is planned by the same planner and gets the head a
hit would (`stored_head`, the one serialiser `vcdn.httpserve.wire`), then each span is
streamed from the temp file as the fill advances; a failure after the headers left
aborts the connection, since a short body under a promised Content-Length would be
taken as whole. A relay's head is laid out by the same serialiser (`relay_head`). Both
write to the transport themselves and tell aiohttp so (`AlreadySent`).
"""

from __future__ import annotations

import os
import time
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from edge import cachestatus, freshness
from edge.fill import VIA, FillFailed, Tail
from edge.store import Entry
from edge.upstream import UpstreamResponse
from vcdn.httpserve import media
from vcdn.httpserve.body import TransportSink
from vcdn.httpserve.hot import AlreadySent
from vcdn.httpserve.plan import Plan, plan_stored
from vcdn.httpserve.ram import RamTier
from vcdn.httpserve.wire import StoredHead, head_prefix, head_tail, relay_head

CHUNK: Final = 256 * 1024


def cache_control_of(entry: Entry, live: bool) -> str:
    return entry.cache_control or media.cache_control(entry.path, live=live)


class RamCache(RamTier[bytes]):
    """Small hot objects' bytes, keyed by their file (a new version, a new key)."""

    __slots__ = ()

    def put(self, file: str, body: bytes, cost: int = 0, *, body_size: int = 0) -> None:  # type: ignore[override]
        if file not in self:
            super().put(file, body, len(body), body=len(body))


def on_disk(path: str) -> bool:
    """Is the object's file still there? (A purge in another worker may have removed it.)"""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    return True


def read_small(path: str, size: int) -> bytes | None:
    """A small object's bytes (page cache, microseconds); None if gone or not whole."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        body = os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)
    return body if len(body) == size else None


def stored_head(entry: Entry, live: bool, status: str = cachestatus.HIT) -> StoredHead:
    """What every answer from `entry` carries besides the planner's fields, Age and Date:
    a hit's, and a growing fill's (`send_tail`) with its own Cache-Status."""
    return StoredHead.of(
        (*entry.headers, ("Via", VIA), ("Cache-Status", status)),
        cache_control_of(entry, live),
    )


def plan_for(request: web.Request, draft: Entry, size: int) -> Plan:
    return plan_stored(request.method, request.headers, draft, size)


def keeps_alive(request: web.BaseRequest) -> bool:
    """Whether the connection stays open after this answer (we speak HTTP/1.1 only)."""
    return request.keep_alive and request.version == HttpVersion11


def _sink(request: web.BaseRequest) -> TransportSink:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    return TransportSink(transport, request.writer.drain)  # type: ignore[arg-type]


async def send_tail(
    request: web.Request, tail: Tail, plan: Plan, *, live: bool, status: str
) -> tuple[AlreadySent, int]:
    """Stream the planned spans of a growing fill as its bytes arrive, under the head a
    hit of the same object gets (the one serialiser, `vcdn.httpserve.wire`), with
    Cache-Status `status`."""
    fill = tail.fill
    draft = fill.draft
    assert draft is not None
    now = time.time()
    keep_alive = keeps_alive(request)
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    sink = _sink(request)
    # The head leaves now, not with the first body bytes: the client learns status and
    # length while the upstream is still sending.
    await sink.write(
        head_prefix(plan, stored_head(draft, live, status))
        + head_tail(now, age=age, keep_alive=keep_alive)
    )
    sent = 0
    if plan.has_body:
        try:
            if plan.multipart is None:
                r = plan.spans[0]
                sent += await _stream(sink, tail, r.first, r.last)
            else:
                for part in plan.multipart.parts:
                    await sink.write(part.header)
                    sent += await _stream(sink, tail, part.range.first, part.range.last)
                await sink.write(plan.multipart.trailer)
        except (FillFailed, OSError, TimeoutError):
            # A short body under a promised Content-Length would be taken as whole.
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fill failed after the headers were sent") from None
    return AlreadySent(plan.status, sent, keep_alive=keep_alive), sent


async def _stream(sink: TransportSink, tail: Tail, first: int, last: int) -> int:
    pos = first
    fill = tail.fill
    while pos <= last:
        avail = fill.written
        if avail <= pos:
            avail = await fill.wait_beyond(pos)
            if avail <= pos:
                raise FillFailed(f"The fill of {fill.key!r} ended at {avail} bytes.")
        n = min(CHUNK, last + 1 - pos, avail - pos)
        data = os.pread(tail.fd, n, pos)
        if not data:
            raise FillFailed(f"The fill of {fill.key!r} lost bytes at {pos}.")
        # A client that takes no byte for `SEND_TIMEOUT` is cut off (slow-reader
        # defence): the sink's wait raises TimeoutError.
        await sink.write(data)
        pos += len(data)
    return last + 1 - first


async def relay(
    request: web.Request, upstream: UpstreamResponse, status: str | None, *, head: bool = False
) -> tuple[AlreadySent, int]:
    """Pass an upstream answer through unchanged but for hop-by-hop fields, Via, Date,
    Server and our Cache-Status entry (`status`), under a head laid out as a hit's
    (`vcdn.httpserve.wire.relay_head`). A body of unknown length goes chunked, or, to
    an HTTP/1.0 client, until the connection closes."""
    pairs = list(upstream.headers.items())
    connection_named = {
        v.strip().lower() for n, v in pairs if n.lower() == "connection" for v in v.split(",")
    }
    fields: list[tuple[str, str]] = []
    length: str | None = None
    for name, value in pairs:
        lower = name.lower()
        if lower in freshness.HOP_BY_HOP or lower in connection_named:
            continue
        if lower in ("via", "date", "server", "cache-status"):
            continue
        if lower == "content-length":
            length = value.strip()
            continue
        fields.append((name, value))
    prior = ", ".join(upstream.headers.getall("Via", []))
    fields.append(("Via", f"{prior}, {VIA}" if prior else VIA))
    if status is not None:
        prior = ", ".join(upstream.headers.getall("Cache-Status", []))
        fields.append(("Cache-Status", cachestatus.append(prior or None, status)))
    no_body = (
        head or request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
    )
    keep_alive = keeps_alive(request)
    chunked = False
    if length is not None and length.isdigit():
        fields.append(("Content-Length", length))
    elif not no_body:
        if request.version == HttpVersion11:
            chunked = True  # a client can tell a body cut short from a whole one
            fields.append(("Transfer-Encoding", "chunked"))
        else:
            keep_alive = False  # HTTP/1.0: the body ends where the connection does
    sent = 0
    try:
        sink = _sink(request)
        await sink.write(relay_head(upstream.status, fields, time.time(), keep_alive=keep_alive))
        if not no_body:
            try:
                async for chunk in upstream.chunks():
                    if not chunk:
                        continue
                    await sink.write(
                        b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
                    )
                    sent += len(chunk)
                if chunked:
                    await sink.write(b"0\r\n\r\n")
            except Exception:
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("upstream body broke off") from None
    finally:
        upstream.close()
    return AlreadySent(upstream.status, sent, keep_alive=keep_alive), sent
