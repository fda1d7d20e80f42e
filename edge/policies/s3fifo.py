"""S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023).

Three FIFO queues: a small probationary queue S (10% of the cached bytes), a main queue M,
and a ghost queue G that remembers only the keys recently evicted from S. A new object
enters S; if it is hit at least once before it reaches the tail of S it moves to M,
otherwise it leaves the cache and its key goes to G, and a key found in G on its next
insert goes straight to M. One-hit wonders (most of a video tail: one viewer, one pass)
thus leave after a short stay instead of pushing popular objects out, which is the
admission an edge cache needs. M is a FIFO with "lazy promotion": an object at M's tail
with hits left is reinserted at the head with one hit fewer (a CLOCK with 2-bit counters).

Sizes are bytes, so S's share is a share of bytes. The store does not tell a policy its
capacity; when the store asks for victims the cache is full, so S's target is
`small_ratio` of the bytes the policy tracks then. G holds as many keys as M holds objects
(the paper's sizing). Pinned objects are a separate tier, offered after every other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from edge.policies.base import Key, PinnedTier

SMALL_RATIO: Final = 0.10
MAX_FREQ: Final = 3  # 2-bit counters, as in the paper
MIN_GHOST: Final = 64


class S3FIFO:
    """S (probation) → M (main, lazy promotion) with a ghost of S's evictions; pinned last."""

    name: Final = "s3fifo"
    __slots__ = (
        "_freq",
        "_ghost",
        "_main",
        "_main_bytes",
        "_pinned",
        "_sizes",
        "_small",
        "_small_bytes",
        "small_ratio",
    )

    def __init__(self, small_ratio: float = SMALL_RATIO) -> None:
        if not 0.0 < small_ratio < 1.0:
            raise ValueError("small_ratio must be between 0 and 1")
        self.small_ratio = small_ratio
        self._sizes: dict[Key, int] = {}
        self._freq: dict[Key, int] = {}
        self._small: OrderedDict[Key, None] = OrderedDict()
        self._main: OrderedDict[Key, None] = OrderedDict()
        self._ghost: OrderedDict[Key, None] = OrderedDict()
        self._small_bytes = 0
        self._main_bytes = 0
        self._pinned = PinnedTier()

    def __len__(self) -> int:
        return len(self._sizes)

    def __contains__(self, key: Key) -> bool:
        return key in self._sizes

    def queue_of(self, key: Key) -> str | None:
        """'small', 'main', 'pinned' or None: for tests and the simulator's accounting."""
        if key in self._small:
            return "small"
        if key in self._main:
            return "main"
        if key in self._pinned:
            return "pinned"
        return None

    def in_ghost(self, key: Key) -> bool:
        return key in self._ghost

    # --- the store's calls ---

    def on_insert(self, key: Key, size: int, pinned: bool) -> None:
        known = key in self._sizes
        was_pinned = key in self._pinned
        self._detach(key)
        self._sizes[key] = size
        if pinned:
            self._pinned.add(key, size)
            return
        if known or key in self._ghost:
            # A new version, an unpinned manifest object, or a key evicted from S and asked
            # for again: it has proved itself, so it skips probation.
            self._ghost.pop(key, None)
            self._freq[key] = 0 if was_pinned else self._freq.get(key, 0)
            self._main[key] = None
            self._main_bytes += size
        else:
            self._freq[key] = 0
            self._small[key] = None
            self._small_bytes += size

    def on_access(self, key: Key) -> None:
        if self._pinned.touch(key):
            return
        freq = self._freq.get(key)
        if freq is not None and freq < MAX_FREQ:
            self._freq[key] = freq + 1

    def on_remove(self, key: Key) -> None:
        self._detach(key)
        self._sizes.pop(key, None)
        self._freq.pop(key, None)

    def victims(self, bytes_needed: int) -> Iterator[Key]:
        freed = 0
        skipped: set[Key] = set()
        while freed < bytes_needed:
            key = self._next_victim()
            if key is None or key in skipped:
                break
            size = self._sizes[key]
            yield key
            if key in self._sizes:  # the caller kept it: send it round M once more
                skipped.add(key)
                self._ghost.pop(key, None)
                self._detach(key)
                self._main[key] = None
                self._main_bytes += size
            else:
                freed += size
        if freed < bytes_needed:
            yield from self._pinned.victims(bytes_needed - freed)

    # --- internals ---

    def _detach(self, key: Key) -> None:
        size = self._sizes.get(key, 0)
        if self._small.pop(key, 0) is None:
            self._small_bytes -= size
        elif self._main.pop(key, 0) is None:
            self._main_bytes -= size
        else:
            self._pinned.discard(key)

    def _next_victim(self) -> Key | None:
        """The next object to leave (still tracked until `on_remove`); moves survivors."""
        while self._small or self._main:
            total = self._small_bytes + self._main_bytes
            if self._small and (self._small_bytes >= self.small_ratio * total or not self._main):
                key = next(iter(self._small))
                if self._freq[key] >= 1:
                    # Hit while on probation: promote to M (paper: "accessed at least once").
                    del self._small[key]
                    size = self._sizes[key]
                    self._small_bytes -= size
                    self._main[key] = None
                    self._main_bytes += size
                    continue
                self._remember(key)
                return key
            key = next(iter(self._main))
            freq = self._freq[key]
            if freq > 0:
                self._freq[key] = freq - 1
                self._main.move_to_end(key)
                continue
            return key
        return None

    def _remember(self, key: Key) -> None:
        self._ghost[key] = None
        self._ghost.move_to_end(key)
        limit = max(MIN_GHOST, len(self._main))
        while len(self._ghost) > limit:
            self._ghost.popitem(last=False)
