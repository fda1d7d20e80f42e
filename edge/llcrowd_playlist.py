"""The crowd of players blocking on the same LL-HLS playlist request (`edge.llcrowd`).

The requests that find the blocking fill of their key in flight in this worker join one
`Crowd`: in the very turn of the event loop the fill's last byte lands (the upstream's
answer, or another worker's file of it; `Fill.watch`, no task woken for it), the answer
is serialised once and the same bytes are written to every waiting connection in one
pass, before any waiter's handler resumes (each then only returns `AlreadySent`). The
leader of a blocking fill does not yield to the loop between the upstream's answer and
its body for that. The fill is the ordinary coalesced one, so the origin still sees one
request per (playlist, msn, part, skip) per appliance.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from edge import freshness
from edge.fill import Fill, Pass
from edge.llcrowd_shared import CrowdBook, collapsed_head, log
from edge.llhls import shared_refusal
from edge.serve import read_small
from edge.store import Entry
from vcdn.httpserve.plan import plan_stored
from vcdn.httpserve.wire import head_prefix, head_tail

if TYPE_CHECKING:
    from edge.engine import Edge

#: A playlist is a few KiB; anything larger is answered on the normal path.
BODY_MAX: Final = 256 * 1024


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
    age = freshness.current_age(draft.initial_age, draft.response_time, now)
    return b"".join((head_prefix(plan, collapsed_head(draft, live)), head_tail(now, age=age),
                     body))


class PlaylistCrowds(CrowdBook):
    """The blocking playlist crowds of one edge worker, by cache key."""

    def __init__(self, edge: Edge) -> None:
        super().__init__(edge)
        self._crowds: dict[str, Crowd] = {}

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
            self._spawn(self._watch(key, crowd))
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
        if late is not None:
            self._edge.stats.blocking_answer.observe(
                max(0.0, time.time() - late.response_time))
        self._tally(crowd.title, crowd.fill.source, n, crowd.body_length)
