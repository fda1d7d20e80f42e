"""A fill of unknown length streamed to a player as it arrives: the preload-hinted LL-HLS
part, which the origin sends chunked while the packager is still encoding it.

Ranges of such a fill need its end, so those wait (`edge.app`); a plain GET does not: it
gets a chunked 200 whose bytes leave as they land in the fill's file, every waiting player
reading its own offset of the same file (read-while-writer). If the fill fails after the
headers went out, the connection is cut, so that no player takes a short part for a whole
one.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Final

from aiohttp import web

from edge.fill import FillFailed, Tail
from edge.serve import cache_control_of, extra_headers
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.send import SEND_TIMEOUT

CHUNK: Final = 256 * 1024


def streams(request: web.Request, tail: Tail) -> bool:
    """Whether this request of a fill without a Content-Length is answered as it grows."""
    return request.method == "GET" and "Range" not in request.headers and tail.fill.size is None


async def send_growing(request: web.Request, tail: Tail, *, live: bool) -> tuple[
    web.StreamResponse, int
]:
    fill = tail.fill
    draft = fill.draft
    assert draft is not None
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = draft.content_type
    if draft.etag:
        resp.headers["ETag"] = draft.etag
    for name, value in (*RESPONSE_HEADERS, *extra_headers(draft, time.time())):
        if name.lower() not in ("content-length", "transfer-encoding"):
            resp.headers.add(name, value)
    resp.headers["Cache-Control"] = cache_control_of(draft, live)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    pos = 0
    try:
        while True:
            avail = fill.written
            if avail <= pos:
                if fill.done:
                    if fill.error is not None or fill.entry is None:
                        raise FillFailed(f"The fill of {fill.key!r} failed.")
                    break
                avail = await fill.wait_beyond(pos)
                continue
            data = os.pread(tail.fd, min(CHUNK, avail - pos), pos)
            if not data:
                raise FillFailed(f"The fill of {fill.key!r} lost bytes at {pos}.")
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await resp.write(data)
            except TimeoutError:
                raise FillFailed("the client stopped reading") from None
            pos += len(data)
    except FillFailed:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("fill failed after the headers were sent") from None
    await resp.write_eof()
    return resp, pos
