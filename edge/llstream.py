"""A fill of unknown length streamed to a player as it arrives: the preload-hinted LL-HLS
part, which the origin sends chunked while the packager is still encoding it.

Ranges of such a fill need its end, so those wait (`edge.app`); a plain GET does not: it
gets a chunked 200 whose bytes leave as they land in the fill's file, every waiting player
reading its own offset of the same file (read-while-writer). If the fill fails after the
headers went out, the connection is cut, so that no player takes a short part for a whole
one.
"""

from __future__ import annotations

import os
import time
from typing import Final

from aiohttp import web
from aiohttp.http import HttpVersion11

from edge import freshness
from edge.fill import FillFailed, Tail
from edge.serve import keeps_alive, stored_head
from vcdn.httpserve.body import TransportSink
from vcdn.httpserve.hot import AlreadySent
from vcdn.httpserve.plan import Plan, plan_stored
from vcdn.httpserve.wire import head_prefix, head_tail

CHUNK: Final = 256 * 1024


def streams(request: web.Request, tail: Tail) -> bool:
    """Whether this request of a fill without a Content-Length is answered as it grows."""
    return request.method == "GET" and "Range" not in request.headers and tail.fill.size is None


async def send_growing(
    request: web.Request, tail: Tail, *, live: bool, status: str
) -> tuple[AlreadySent, int]:
    """The growing fill as a 200 of unknown length, under the head a hit of the same
    object gets (`edge.serve.stored_head`, the one serialiser): chunked, or to an HTTP/1.0
    client until the connection closes."""
    fill = tail.fill
    draft = fill.draft
    assert draft is not None
    chunked = request.version == HttpVersion11
    keep_alive = chunked and keeps_alive(request)
    framing = (("Transfer-Encoding", "chunked"),) if chunked else ()
    # The planner's fields of a plain GET (validators, Content-Type), framed by chunks.
    whole = plan_stored("GET", {}, draft, 0)
    plan = Plan(200, (*(f for f in whole.headers if f[0] != "Content-Length"), *framing))
    now = time.time()
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    sink = TransportSink(transport, request.writer.drain)  # type: ignore[arg-type]
    await sink.write(head_prefix(plan, stored_head(draft, live, status))
                     + head_tail(now, age=age, keep_alive=keep_alive))
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
            # A client that takes no byte for `SEND_TIMEOUT` is cut off (TimeoutError).
            await sink.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            pos += len(data)
        if chunked:
            await sink.write(b"0\r\n\r\n")
    except (FillFailed, OSError, TimeoutError):
        # No player may take a short part for a whole one.
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("fill failed after the headers were sent") from None
    return AlreadySent(200, pos, keep_alive=keep_alive), pos
