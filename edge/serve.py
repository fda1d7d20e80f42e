"""Sending what is not a stored answer: growing fills (pread as bytes land) and relays.

Every answer from a stored object goes through the one hit pipeline (`edge.fastpath`,
`vcdn.httpserve.hit`). A growing fill is planned by the same planner, then each span is
streamed from the temp file as the fill advances; a failure after the headers left
aborts the connection, since a short body under a promised Content-Length would be
taken as whole.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from typing import Final

from aiohttp import web

from edge import freshness
from edge.fill import VIA, FillFailed, Tail
from edge.store import Entry
from edge.upstream import UpstreamResponse
from vcdn.httpserve import media
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.plan import Plan, plan_stored
from vcdn.httpserve.ram import RamTier
from vcdn.httpserve.send import SEND_TIMEOUT

CHUNK: Final = 256 * 1024


def cache_control_of(entry: Entry, live: bool) -> str:
    return entry.cache_control or media.cache_control(entry.path, live=live)


def extra_headers(entry: Entry, now: float) -> list[tuple[str, str]]:
    age = freshness.current_age(entry.initial_age, entry.response_time, now)
    return [*entry.headers, ("Age", freshness.age_header(age)), ("Via", VIA)]


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


def _response(plan: Plan, headers: Iterable[tuple[str, str]]) -> web.StreamResponse:
    resp = web.StreamResponse(status=plan.status)
    for name, value in (*plan.headers, *RESPONSE_HEADERS, *headers):
        resp.headers.add(name, value)
    if plan.status != 304:
        resp.content_length = plan.content_length
    return resp


def plan_for(request: web.Request, draft: Entry, size: int) -> Plan:
    return plan_stored(request.method, request.headers, draft, size)


async def send_tail(
    request: web.Request, tail: Tail, plan: Plan, *, live: bool
) -> tuple[web.StreamResponse, int]:
    """Stream the planned spans of a growing fill as its bytes arrive."""
    fill = tail.fill
    draft = fill.draft
    assert draft is not None
    cc = cache_control_of(draft, live)
    headers = [*extra_headers(draft, time.time())]
    if plan.status in (200, 206, 304):
        headers.append(("Cache-Control", cc))
    resp = _response(plan, headers)
    writer = await resp.prepare(request)
    # Headers leave now, not with the first body bytes: the client learns status and
    # length while the upstream is still sending.
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()
    sent = 0
    if plan.has_body:
        try:
            if plan.multipart is None:
                r = plan.spans[0]
                sent += await _stream(resp, tail, r.first, r.last)
            else:
                for part in plan.multipart.parts:
                    await resp.write(part.header)
                    sent += await _stream(resp, tail, part.range.first, part.range.last)
                await resp.write(plan.multipart.trailer)
        except FillFailed:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fill failed after the headers were sent") from None
    await resp.write_eof()
    return resp, sent


async def _stream(resp: web.StreamResponse, tail: Tail, first: int, last: int) -> int:
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
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await resp.write(data)
        except TimeoutError:
            # A client that takes no byte for this long is cut off (slow-reader defence).
            raise FillFailed("the client stopped reading") from None
        pos += len(data)
    return last + 1 - first


async def relay(
    request: web.Request, upstream: UpstreamResponse, *, head: bool = False
) -> tuple[web.StreamResponse, int]:
    """Pass an upstream answer through unchanged but for hop-by-hop fields and Via."""
    resp = web.StreamResponse(status=upstream.status)
    pairs = list(upstream.headers.items())
    connection_named = {
        v.strip().lower() for n, v in pairs if n.lower() == "connection" for v in v.split(",")
    }
    length: str | None = None
    for name, value in pairs:
        lower = name.lower()
        if lower in freshness.HOP_BY_HOP or lower in connection_named:
            continue
        if lower in ("via", "date", "server"):
            continue
        if lower == "content-length":
            length = value
            continue
        resp.headers.add(name, value)
    prior = upstream.headers.get("Via")
    resp.headers["Via"] = f"{prior}, {VIA}" if prior else VIA
    no_body = (
        head or request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
    )
    if length is not None and length.strip().isdigit():
        resp.content_length = int(length)
    elif no_body:
        pass
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    sent = 0
    try:
        if not no_body:
            try:
                async for chunk in upstream.chunks():
                    await resp.write(chunk)
                    sent += len(chunk)
            except Exception:
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("upstream body broke off") from None
    finally:
        upstream.close()
    await resp.write_eof()
    return resp, sent
