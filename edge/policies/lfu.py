"""Least frequently used: the classic frequency baseline (in-cache counts, LRU ties).

A count lives only while its object is cached (in-cache LFU, not perfect LFU), so an
object that was popular last week and evicted starts again from one. The order is a heap
of ``(count, last access tick, key)`` entries invalidated lazily: a hit pushes a new
entry instead of searching for the old one, and the heap is rebuilt when stale entries
outnumber live ones four to one, so every call stays O(log n) amortised.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Final

from edge.policies.base import Key, PinnedTier

COMPACT_FACTOR: Final = 4


class LFU:
    """Fewest hits first, least recently used among equals; pinned objects last."""

    name: Final = "lfu"
    __slots__ = ("_heap", "_meta", "_pinned", "_sizes", "_tick")

    def __init__(self) -> None:
        self._sizes: dict[Key, int] = {}
        self._meta: dict[Key, tuple[int, int]] = {}  # unpinned key -> (count, tick)
        self._heap: list[tuple[int, int, Key]] = []
        self._pinned = PinnedTier()
        self._tick = 0

    def __len__(self) -> int:
        return len(self._sizes)

    def __contains__(self, key: Key) -> bool:
        return key in self._sizes

    def _push(self, key: Key, count: int) -> None:
        self._tick += 1
        self._meta[key] = (count, self._tick)
        heapq.heappush(self._heap, (count, self._tick, key))
        if len(self._heap) > COMPACT_FACTOR * max(16, len(self._meta)):
            self._heap = [(c, t, k) for k, (c, t) in self._meta.items()]
            heapq.heapify(self._heap)

    def on_insert(self, key: Key, size: int, pinned: bool) -> None:
        count = self._meta.pop(key, (0, 0))[0]
        self._pinned.discard(key)
        self._sizes[key] = size
        if pinned:
            self._pinned.add(key, size)
        else:
            # A new version or an unpin keeps the hits the key already earned.
            self._push(key, max(1, count))

    def on_access(self, key: Key) -> None:
        if self._pinned.touch(key):
            return
        meta = self._meta.get(key)
        if meta is not None:
            self._push(key, meta[0] + 1)

    def on_remove(self, key: Key) -> None:
        self._sizes.pop(key, None)
        self._meta.pop(key, None)
        self._pinned.discard(key)

    def victims(self, bytes_needed: int) -> Iterator[Key]:
        freed = 0
        skipped: list[tuple[int, int, Key]] = []
        while freed < bytes_needed and self._heap:
            count, tick, key = heapq.heappop(self._heap)
            if self._meta.get(key) != (count, tick):
                continue  # stale: the key was hit, removed or pinned since
            size = self._sizes[key]
            yield key
            if key in self._meta:
                skipped.append((count, tick, key))  # the caller kept it
            else:
                freed += size
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if freed < bytes_needed:
            yield from self._pinned.victims(bytes_needed - freed)
