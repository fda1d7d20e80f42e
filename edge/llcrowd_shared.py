"""What the two kinds of LL-HLS crowd (`edge.llcrowd`) share: the Cache-Status of an
answer shared among a crowd, its stored fields, and the bookkeeping of one worker's
crowds (their watching tasks, answers serialised, members answered and counted)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

from edge import cachestatus
from edge.fill import VIA
from edge.serve import cache_control_of
from edge.store import Entry
from vcdn.aiotasks import cancel_all
from vcdn.httpserve.wire import StoredHead

if TYPE_CHECKING:
    from edge.engine import Edge

#: One logger for both kinds, as before they were apart.
log = logging.getLogger("vcdn.edge.llcrowd")

#: RFC 9211 §2.8: this answer came from a forward request shared with others.
CACHE_STATUS: Final = cachestatus.value("miss", stored=True) + "; collapsed"


def collapsed_head(draft: Entry, live: bool) -> StoredHead:
    """The stored fields of an answer shared among a crowd, with its Cache-Status."""
    return StoredHead.of(
        (*draft.headers, ("Via", VIA), ("Cache-Status", CACHE_STATUS)),
        cache_control_of(draft, live),
    )


class CrowdBook:
    """One worker's crowds of one kind: the tasks watching their fills, and how many
    answers were serialised for them and members answered (tests, `vcdn_edge_*`)."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._tasks: set[asyncio.Task[None]] = set()
        self.renders = 0
        self.answered = 0

    def _spawn(self, watch: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(watch)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tally(self, title: str, source: str, n: int, body_length: int) -> None:
        """`n` members answered with a body of `body_length` bytes: misses served."""
        self.answered += n
        if n:
            stats = self._edge.stats
            stats.requests.labels("miss").inc(n)
            stats.misses += n
            stats.titles[title] += n
            stats.sent_bytes(source, n * body_length)

    async def close(self) -> None:
        await cancel_all(self._tasks)
