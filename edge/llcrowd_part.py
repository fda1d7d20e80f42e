"""The crowd of players reading the same preload-hinted part while it grows
(`edge.llcrowd`).

Every player asks for the hinted part as soon as a playlist names it, and the origin
writes it chunked while the packager is still encoding it. The requests that find such a
growing fill in flight get one head serialised for all (a `Stream`), the bytes so far,
and then each piece the fill writes, framed once as an HTTP/1.1 chunk and written to
every member in the turn it lands; the last chunk leaves as soon as the upstream's body
has ended, before the object is published. A member whose connection stops taking bytes
is cut off; a fill that fails cuts them all off, so that no player takes a short part for
a whole one.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from edge import freshness
from edge.fill import Fill
from edge.llcrowd_shared import CrowdBook, collapsed_head, log
from edge.store import Entry
from vcdn.httpserve.wire import head_tail

if TYPE_CHECKING:
    from edge.engine import Edge

#: A member with this much unsent is not reading its part: cut off (slow-reader defence).
STREAM_BUFFER_MAX: Final = 4 * 1024 * 1024
LAST_CHUNK: Final = b"0\r\n\r\n"
FALLBACK: Final = -2


@dataclass(slots=True, eq=False)
class Stream:
    """The requests of one worker reading one growing fill (no Content-Length)."""

    fill: Fill
    title: str
    #: A dup of the fill's file and the head, once the fill's head is known.
    fd: int = -1
    head: bytes = b""
    #: Sent the head and every byte up to `pos` / not sent anything yet.
    members: list[asyncio.Transport] = field(default_factory=list)
    waiting: list[asyncio.Transport] = field(default_factory=list)
    pos: int = 0
    #: Resolves to the body length once it ended, -1 when the members were cut off, or
    #: FALLBACK when they were sent nothing and the normal path must answer them.
    ended: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _growing(fill: Fill) -> bool:
    """A fill of unknown length that does not vary: one stream serves all its readers."""
    draft = fill.draft
    return draft is not None and draft.size < 0 and not any(
        name.lower() == "vary" for name, _ in draft.headers
    )


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (RFC 9112 §7.1)."""
    return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))


def stream_head(draft: Entry, now: float, *, live: bool) -> bytes:
    """The head of a chunked 200 of a growing fill: the fields `edge.llstream` sends."""
    fields = [("Content-Type", draft.content_type)]
    if draft.etag:
        fields.append(("ETag", draft.etag))
    fields.append(("Transfer-Encoding", "chunked"))
    stored = collapsed_head(draft, live)
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    lines = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    cc = f"Cache-Control: {stored.cache_control}\r\n" if stored.cache_control else ""
    return b"".join((lines.encode("latin-1"), stored.fixed, cc.encode("latin-1"),
                     head_tail(now, age=age)))


class PartStreams(CrowdBook):
    """The growing-part crowds of one edge worker, by cache key."""

    def __init__(self, edge: Edge) -> None:
        super().__init__(edge)
        self._streams: dict[str, Stream] = {}

    async def follow(self, key: str, title: str, transport: asyncio.Transport) -> int | None:
        """Read a growing fill of `key` in flight with the others reading it; the body
        length once it ended on `transport`, None when the normal path must answer.
        Raises ConnectionResetError when the fill failed after the head went out."""
        fills = self._edge.fills
        fill = fills.inflight(key) if fills is not None else None
        if fill is None or fill.done:
            return None
        stream = self._streams.get(key)
        if stream is None or stream.fill is not fill:
            ready = fill.ready
            if ready.done() and (ready.cancelled() or ready.exception() is not None
                                 or ready.result() is not fill or not _growing(fill)):
                return None  # stored, refused, failed, or of known length: normal path
            stream = self._streams[key] = Stream(fill, title)
            fill.watch(lambda: self._advance(key, stream))
            if not ready.done():
                self._spawn(self._watch_stream(key, stream))
        stream.waiting.append(transport)
        self._advance(key, stream)
        sent = await asyncio.shield(stream.ended)
        if sent == FALLBACK:
            return None
        if sent < 0:
            raise ConnectionResetError("the part's fill failed after its head was sent")
        return sent

    async def _watch_stream(self, key: str, stream: Stream) -> None:
        """A stream whose fill turned out not to be a growing one (stored, refused,
        failed, of known length): its members, sent nothing yet, take the normal path."""
        fill = stream.fill
        try:
            outcome = await asyncio.shield(fill.ready)
        except Exception:
            outcome = None
        if outcome is not fill or not _growing(fill):
            self._end(key, stream, ok=False, fallback=True)
        else:
            self._advance(key, stream)

    def _advance(self, key: str, stream: Stream) -> None:
        """Send every member what the fill wrote since; end or cut them when it ends.
        Called from inside the fill: whatever goes wrong here must not fail it."""
        try:
            self._advance_stream(key, stream)
        except Exception:
            log.exception("stream_failed", extra={"fields": {"key": key}})
            self._end(key, stream, ok=False)

    def _advance_stream(self, key: str, stream: Stream) -> None:
        fill = stream.fill
        if stream.ended.done() or fill.draft is None or not fill.ready.done():
            return
        if fill.done and (fill.error is not None or fill.entry is None):
            self._end(key, stream, ok=False)
            return
        if stream.fd < 0:
            if fill.done or not _growing(fill):
                # Nothing sent yet (an empty body, a head of known length): normal path.
                self._end(key, stream, ok=False, fallback=True)
                return
            stream.fd = os.dup(fill.fd)  # not done: the fill's fd is open
            stream.head = stream_head(fill.draft, time.time(), live=self._edge.settings.live)
            self.renders += 1
        if stream.waiting:
            # Newcomers: the head once serialised, and the bytes the others already have.
            caught_up = os.pread(stream.fd, stream.pos, 0) if stream.pos else b""
            if len(caught_up) != stream.pos:
                raise OSError(f"the fill of {key!r} lost bytes below {stream.pos}")
            first = stream.head + (chunk(caught_up) if caught_up else b"")
            for transport in stream.waiting:
                if not transport.is_closing():
                    transport.write(first)
                    stream.members.append(transport)
            stream.waiting = []
        if fill.written > stream.pos:
            data = os.pread(stream.fd, fill.written - stream.pos, stream.pos)
            if not data:
                raise OSError(f"the fill of {key!r} lost bytes at {stream.pos}")
            framed = chunk(data)
            stream.pos += len(data)
            keep = []
            for transport in stream.members:
                if transport.is_closing():
                    continue
                if transport.get_write_buffer_size() > STREAM_BUFFER_MAX:
                    transport.abort()  # not reading its part: cut off
                    continue
                transport.write(framed)
                keep.append(transport)
            stream.members = keep
        if (fill.ended or fill.done) and stream.pos >= fill.written:
            self._end(key, stream, ok=True)

    def _end(self, key: str, stream: Stream, *, ok: bool, fallback: bool = False) -> None:
        if stream.ended.done():
            return
        for transport in stream.members:
            if transport.is_closing():
                continue
            if ok:
                transport.write(LAST_CHUNK)
            else:
                transport.abort()  # a short body must never pass for a whole one
        for transport in stream.waiting if not fallback else ():
            transport.abort()
        n = len(stream.members) if ok else 0
        stream.members, stream.waiting = [], []
        if self._streams.get(key) is stream:
            del self._streams[key]
        if stream.fd >= 0:
            os.close(stream.fd)
            stream.fd = -1
        stream.ended.set_result(FALLBACK if fallback else stream.pos if ok else -1)
        self._tally(stream.title, stream.fill.source, n, stream.pos)
