"""A fill in progress, as its waiters see it: bytes written, headers, outcome, and what a
waiter gets from `Fills.obtain` (a growing object to stream, or a pass-through)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from edge.store import Entry
from edge.upstream import UpstreamResponse
from vcdn.errors import UpstreamError


class FillFailed(UpstreamError):
    """The fill this request was waiting on failed."""


@dataclass(frozen=True, slots=True)
class Pass:
    """A response the cache will not store, for the one waiter that claimed it."""

    response: UpstreamResponse


@dataclass(frozen=True, slots=True)
class Tail:
    """A growing object to stream: the fill and a private fd on its file (caller closes)."""

    fill: Fill
    fd: int


class Fill:
    """One object being fetched: its headers (`draft`), bytes written so far, outcome."""

    __slots__ = (
        "_changed",
        "_claimed",
        "_watchers",
        "done",
        "draft",
        "ended",
        "entry",
        "error",
        "fd",
        "generation",
        "key",
        "mark",
        "ready",
        "source",
        "written",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        loop = asyncio.get_running_loop()
        #: Resolves to an Entry (a hit: filled elsewhere or revalidated), to this Fill
        #: (stream it), or to a Pass (not storable), or raises.
        self.ready: asyncio.Future[Entry | Fill | Pass] = loop.create_future()
        self.draft: Entry | None = None
        self.fd = -1
        self.written = 0
        self.done = False
        self.error: BaseException | None = None
        self.entry: Entry | None = None
        self.source = "origin"
        #: The store's purge counter when the fill began (a purge since: not stored).
        self.generation = 0
        #: The key's last invalidation then (`CacheStore.removal_mark`; a new one: not stored).
        self.mark = 0
        self._claimed = False
        self._changed = asyncio.Event()
        #: True once the upstream's body ended whole (before it is published).
        self.ended = False
        #: Called synchronously whenever the fill changes (`watch`).
        self._watchers: list[Callable[[], None]] = []

    @property
    def size(self) -> int | None:
        """The object's size if the upstream declared it (else known only when done)."""
        if self.done and self.error is None:
            return self.written
        return self.draft.size if self.draft is not None and self.draft.size >= 0 else None

    def claim(self) -> bool:
        """True for the first waiter only (the one that gets a pass-through)."""
        first = not self._claimed
        self._claimed = True
        return first

    def advance(self, total: int) -> None:
        self.written = total
        self._notify()

    def body_ended(self) -> None:
        """The upstream's body ended whole; the object is about to be published."""
        self.ended = True
        self._notify()

    @property
    def whole(self) -> bool:
        """Every byte of the declared length is in the file (which is still open)."""
        draft = self.draft
        return draft is not None and 0 <= draft.size <= self.written and not self.done

    def watch(self, listener: Callable[[], None]) -> None:
        """Call `listener` (which must not raise) in the very turn of the loop the fill
        changes: bytes written, body ended, fill done. An LL-HLS crowd's answer leaves
        then (`edge.llcrowd`), without a task waking up for it."""
        self._watchers.append(listener)

    def finish(self, entry: Entry | None, error: BaseException | None = None) -> None:
        self.done = True
        self.entry = entry
        self.error = error
        if not self.ready.done():
            if error is not None:
                self.ready.set_exception(error)
                self.ready.exception()  # retrieved: nobody may be waiting
            elif entry is not None:
                self.ready.set_result(entry)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self._watchers:
            listener()
        if self.done:
            self._watchers = []

    async def finished(self) -> None:
        """Wait until the fill has ended, whatever its outcome."""
        while not self.done:
            await self._changed.wait()

    async def wait_beyond(self, offset: int) -> int:
        """Wait until more than `offset` bytes are written (or the fill ends); the count."""
        while self.written <= offset and not self.done:
            await self._changed.wait()
        if self.written <= offset and self.error is not None:
            raise FillFailed(f"The fill of {self.key!r} failed: {self.error}.")
        return self.written
