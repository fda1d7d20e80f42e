"""One answer for a crowd of players blocking on the same LL-HLS playlist request.

At the live edge every low-latency player holds a blocking playlist request for the next
part open (`edge.llhls`), and when the part arrives they are all answered at once. On the
normal miss path each of them costs a request handler, a response object, a head of its
own and two wake-ups (head, then body), and the answers of the last players leave the
edge behind the next requests of the first ones. Instead, the requests that find the
blocking fill of their key in flight in this worker join one `Crowd`: in the very turn
of the event loop the fill's last byte lands (the upstream's answer, or another worker's
file of it; `Fill.when_whole`, no task woken for it), the answer is serialised once and
the same bytes are written to every waiting connection in one pass, before any waiter's
handler resumes (each then only returns `AlreadySent`). The leader of a blocking fill
does not yield to the loop between the upstream's answer and its body for that. The fill
is the ordinary coalesced one, so the origin still sees one request per (playlist, msn,
part, skip) per appliance.

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
from edge.serve import cache_control_of
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
        self._tasks: set[asyncio.Task[None]] = set()
        #: Answers serialised for crowds / members answered (tests, `vcdn_edge_*`).
        self.renders = 0
        self.answered = 0

    def _key_of(self, raw: str, headers: Mapping[str, str]) -> tuple[str, str] | None:
        """(key, title) of a plain blocking playlist request whose route the fast path
        already verified (`Edge.fast_routes`), else None."""
        route = self._edge.fast_routes.get(raw)
        if route is None:
            return None
        key, title, expires = route
        if not blocking_key(key) or expires < time.time() or not plain(headers):
            return None
        return key, title

    async def join(
        self, raw: str, headers: Mapping[str, str], transport: asyncio.Transport
    ) -> int | None:
        """Wait with the crowd of this request's blocking fill; the body length once the
        answer is on `transport`, or None when the normal path must answer (no fill of
        this key in flight here: the request starts one)."""
        found = self._key_of(raw, headers)
        fills = self._edge.fills
        if found is None or fills is None:
            return None
        key, title = found
        fill = fills.inflight(key)
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
            fill.when_whole(lambda: self._whole(crowd))
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
