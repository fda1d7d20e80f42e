"""One answer for a crowd of players blocking on the same LL-HLS playlist request.

At the live edge every low-latency player holds a blocking playlist request for the next
part open (`edge.llhls`), and when the part arrives they are all answered at once. On the
normal miss path each of them costs a request handler, a response object, a head of its
own and two wake-ups (head, then body), and the answers of the last players leave the
edge behind the next requests of the first ones. Instead, the requests that find the
blocking fill of their key in flight in this worker join one `Crowd`: in the very turn
of the event loop the fill's last byte lands (the upstream's answer, or another worker's
file of it; `Fill.watch`, no task woken for it), the answer is serialised once and
the same bytes are written to every waiting connection in one pass, before any waiter's
handler resumes (each then only returns `AlreadySent`). The leader of a blocking fill
does not yield to the loop between the upstream's answer and its body for that. The fill
is the ordinary coalesced one, so the origin still sees one request per (playlist, msn,
part, skip) per appliance.

The preload-hinted part is the same crowd in another shape (`Stream`): every player asks
for it as soon as a playlist names it, and the origin writes it chunked while the
packager is still encoding it. The requests that find such a growing fill in flight get
one head serialised for all, the bytes so far, and then each piece the fill writes,
framed once as an HTTP/1.1 chunk and written to every member in the turn it lands; the
last chunk leaves as soon as the upstream's body has ended, before the object is
published. A member whose connection stops taking bytes is cut off; a fill that fails
cuts them all off, so that no player takes a short part for a whole one.

Anything unusual takes the normal path (`edge.app.serve`): a request with a range,
conditional or cache directives; a fill that fails, varies, or is not storable (the
origin's 400 or 503, which the normal path keeps and shares among the crowd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from edge import cachestatus, freshness
from edge.fill import VIA, Fill, Pass
from edge.llhls import blocking_key, shared_refusal
from edge.serve import cache_control_of, read_small
from edge.store import Entry
from vcdn.httpserve.plan import plan_stored
from vcdn.httpserve.wire import StoredHead, head_prefix, head_tail

if TYPE_CHECKING:
    from edge.engine import Edge

log = logging.getLogger("vcdn.edge.llcrowd")

#: Request fields that need the normal path's planner or freshness judgement.
NOT_PLAIN: Final = (
    "Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since",
    "If-Unmodified-Since", "Cache-Control", "Pragma",
)
#: A playlist is a few KiB; anything larger is answered on the normal path.
BODY_MAX: Final = 256 * 1024
#: RFC 9211 §2.8: this answer came from a forward request shared with others.
CACHE_STATUS: Final = cachestatus.value("miss", stored=True) + "; collapsed"


@dataclass(slots=True, eq=False)
class Crowd:
    """The requests of one worker waiting on one blocking fill."""

    fill: Fill
    title: str
    members: list[asyncio.Transport] = field(default_factory=list)
    #: Resolves to the body length once every member is answered, or -1: normal path.
    answered: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: The bytes written to every member (for those who join before the fill ends).
    answer: bytes = b""
    body_length: int = 0


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


FALLBACK: Final = -2


def _growing(fill: Fill) -> bool:
    """A fill of unknown length that does not vary: one stream serves all its readers."""
    draft = fill.draft
    return draft is not None and draft.size < 0 and not any(
        name.lower() == "vary" for name, _ in draft.headers
    )


#: A member with this much unsent is not reading its part: cut off (slow-reader defence).
STREAM_BUFFER_MAX: Final = 4 * 1024 * 1024
LAST_CHUNK: Final = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (RFC 9112 §7.1)."""
    return b"".join((b"%x\r\n" % len(data), data, b"\r\n"))


def stream_head(draft: Entry, now: float, *, live: bool) -> bytes:
    """The head of a chunked 200 of a growing fill: the fields `edge.llstream` sends."""
    fields = [("Content-Type", draft.content_type)]
    if draft.etag:
        fields.append(("ETag", draft.etag))
    fields.append(("Transfer-Encoding", "chunked"))
    stored = StoredHead.of(
        (*draft.headers, ("Via", VIA), ("Cache-Status", CACHE_STATUS)),
        cache_control_of(draft, live),
    )
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    lines = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    cc = f"Cache-Control: {stored.cache_control}\r\n" if stored.cache_control else ""
    return b"".join((lines.encode("latin-1"), stored.fixed, cc.encode("latin-1"),
                     head_tail(now, age=age)))


def render(draft: Entry, body: bytes, now: float, *, live: bool) -> bytes:
    """The whole answer (head and body) to a plain GET of a blocking fill's object: the
    fields the normal path sends (`edge.serve.send_tail`), serialised once."""
    plan = plan_stored("GET", {}, draft, len(body))
    stored = StoredHead.of(
        (*draft.headers, ("Via", VIA), ("Cache-Status", CACHE_STATUS)),
        cache_control_of(draft, live),
    )
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    return b"".join((head_prefix(plan, stored), head_tail(now, age=age), body))


def plain(headers: Mapping[str, str]) -> bool:
    return not any(name in headers for name in NOT_PLAIN)


class Crowds:
    """The crowds of one edge worker, by cache key."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._crowds: dict[str, Crowd] = {}
        self._streams: dict[str, Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Answers serialised for crowds / members answered (tests, `vcdn_edge_*`).
        self.renders = 0
        self.answered = 0

    def _key_of(self, raw: str, headers: Mapping[str, str]) -> tuple[str, str] | None:
        """(key, title) of a plain request whose route the fast path already verified
        (`Edge.fast_routes`), else None."""
        route = self._edge.fast_routes.known(raw)
        if route is None:
            return None
        key, title, expires = route
        if expires < time.time() or not plain(headers):
            return None
        return key, title

    async def join_any(
        self, raw: str, headers: Mapping[str, str], transport: asyncio.Transport
    ) -> int | None:
        """`join` for a blocking playlist request, `follow` for a growing fill."""
        found = self._key_of(raw, headers)
        if found is None:
            return None
        key, title = found
        if blocking_key(key):
            return await self.join(key, title, transport)
        return await self.follow(key, title, transport)

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
                task = asyncio.create_task(self._watch_stream(key, stream))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
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
        if n:
            stats = self._edge.stats
            self.answered += n
            stats.requests.labels("miss").inc(n)
            stats.misses += n
            stats.titles[stream.title] += n
            stats.sent_bytes(stream.fill.source, n * stream.pos)

    async def join(self, key: str, title: str, transport: asyncio.Transport) -> int | None:
        """Wait with the crowd of this blocking request's fill; the body length once the
        answer is on `transport`, or None when the normal path must answer (no fill of
        this key in flight here: the request starts one)."""
        fills = self._edge.fills
        fill = fills.inflight(key) if fills is not None else None
        if fill is None:
            return None
        crowd = self._crowds.get(key)
        if crowd is not None and crowd.fill is fill and crowd.answer:
            transport.write(crowd.answer)  # the fill is still being published: same bytes
            self._count(crowd, 1, crowd.fill.draft)
            return crowd.body_length
        if crowd is None or crowd.fill is not fill:
            crowd = self._crowds[key] = Crowd(fill, title)
            task = asyncio.create_task(self._watch(key, crowd))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            fill.watch(lambda: self._whole(crowd))
        crowd.members.append(transport)
        if fill.whole:
            self._whole(crowd)  # it landed before anyone here waited for it
        sent = await asyncio.shield(crowd.answered)
        return sent if sent >= 0 else None

    async def _watch(self, key: str, crowd: Crowd) -> None:
        """Until the fill ends: a crowd it did not answer (it failed, was refused, had no
        length, or was stored already) takes the normal path."""
        fill = crowd.fill
        try:
            try:
                outcome = await asyncio.shield(fill.ready)
            except Exception:
                outcome = None  # the fill failed: each member hears so on the normal path
            if isinstance(outcome, Pass):
                # The first requester keeps the origin's refusal: let it, so that the
                # crowd is answered from it rather than asking the origin once each.
                await shared_refusal(self._edge.negative, key)
            elif outcome is fill:
                await fill.finished()
            elif isinstance(outcome, Entry):
                # Stored before this worker saw the fill under way (another worker's fill
                # ended between two looks): the crowd is answered from the stored copy.
                self._stored(crowd, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("crowd_failed", extra={"fields": {"key": key}})
        finally:
            if self._crowds.get(key) is crowd:
                del self._crowds[key]
            if not crowd.answered.done():
                crowd.answered.set_result(-1)

    def _whole(self, crowd: Crowd) -> None:
        """The fill's last byte landed (its file still open): answer every member now.
        Called from inside the fill: whatever goes wrong here must not fail it."""
        try:
            self._answer_whole(crowd)
        except Exception:
            log.exception("crowd_failed", extra={"fields": {"key": crowd.fill.key}})

    def _answer_whole(self, crowd: Crowd) -> None:
        fill, draft = crowd.fill, crowd.fill.draft
        if crowd.answered.done() or draft is None or not fill.whole:
            return
        if draft.size > BODY_MAX or any(name.lower() == "vary" for name, _ in draft.headers):
            return
        try:
            body = os.pread(fill.fd, draft.size, 0)
        except OSError:
            return
        if len(body) == draft.size:
            crowd.answered.set_result(self._answer(crowd, draft, body))

    def _stored(self, crowd: Crowd, entry: Entry) -> None:
        if crowd.answered.done() or not 0 <= entry.size <= BODY_MAX or any(
            name.lower() == "vary" for name, _ in entry.headers
        ):
            return
        body = read_small(self._edge.store.file_str(entry), entry.size)
        if body is not None:
            crowd.answered.set_result(self._answer(crowd, entry, body))

    def _answer(self, crowd: Crowd, draft: Entry, body: bytes) -> int:
        """Serialise once, write to every member in one pass; the body length."""
        edge = self._edge
        answer = render(draft, body, time.time(), live=edge.settings.live)
        crowd.answer, crowd.body_length = answer, len(body)
        self.renders += 1
        edge.stats.blocking_renders.inc()
        observe = edge.stats.blocking_answer.observe
        arrived = draft.response_time
        n = 0
        for transport in crowd.members:
            if not transport.is_closing():
                transport.write(answer)
                observe(max(0.0, time.time() - arrived))
                n += 1
        crowd.members.clear()
        self._count(crowd, n, None)
        return len(body)

    def _count(self, crowd: Crowd, n: int, late: Entry | None) -> None:
        stats = self._edge.stats
        if late is not None:
            stats.blocking_answer.observe(max(0.0, time.time() - late.response_time))
        self.answered += n
        if n:
            stats.requests.labels("miss").inc(n)
            stats.misses += n
            stats.titles[crowd.title] += n
            stats.sent_bytes(crowd.fill.source, n * crowd.body_length)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
