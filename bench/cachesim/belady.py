"""Belady's offline optimum, approximated for objects of different sizes.

Belady's MIN evicts the page whose next request is furthest in the future; it is optimal
for equal-size pages. Here objects have different sizes and the goal is byte hit ratio.
Byte by byte, MIN would evict the bytes whose next request is furthest, and all bytes of
an object share its next request, so evicting whole objects in order of furthest next
request is MIN at byte granularity, except that objects cannot be split. We also bypass:
an object whose next request is further away than that of every cached object (or never
comes) is not cached at all, as the optimum would not keep it. This is the usual
size-oblivious approximation; for byte hit ratio it is an upper bound in practice, not a
proof (exact variable-size optimum is NP-hard; see Berger et al., "Practical Bounds on
Optimal Caching with Variable Object Sizes", SIGMETRICS 2018).

It speaks the store's four-call contract, plus `see(next_request)` which the simulator
calls before each request with the index of the same object's next request on the same
appliance (`NEVER` if none).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Final

from edge.policies.base import Key

NEVER: Final = 2**62
COMPACT_FACTOR: Final = 4


class Belady:
    name: Final = "belady"
    __slots__ = ("_heap", "_next", "_sizes", "_upcoming")

    def __init__(self) -> None:
        self._next: dict[Key, int] = {}
        self._sizes: dict[Key, int] = {}
        self._heap: list[tuple[int, Key]] = []  # (-next request, key), lazily invalidated
        self._upcoming = NEVER

    def __len__(self) -> int:
        return len(self._sizes)

    def see(self, next_request: int) -> None:
        """The current request's object is next asked for at index `next_request`."""
        self._upcoming = next_request

    def admits(self) -> bool:
        """Whether the optimum would cache the object just seen (see the module text)."""
        if self._upcoming >= NEVER:
            return False
        while self._heap:
            neg, key = self._heap[0]
            if self._next.get(key) == -neg:
                return self._upcoming < -neg
            heapq.heappop(self._heap)
        return True

    def _set(self, key: Key) -> None:
        self._next[key] = self._upcoming
        heapq.heappush(self._heap, (-self._upcoming, key))
        if len(self._heap) > COMPACT_FACTOR * max(16, len(self._next)):
            self._heap = [(-n, k) for k, n in self._next.items()]
            heapq.heapify(self._heap)

    def on_insert(self, key: Key, size: int, pinned: bool) -> None:
        self._sizes[key] = size
        self._set(key)

    def on_access(self, key: Key) -> None:
        if key in self._sizes:
            self._set(key)

    def on_remove(self, key: Key) -> None:
        self._sizes.pop(key, None)
        self._next.pop(key, None)

    def victims(self, bytes_needed: int) -> Iterator[Key]:
        freed = 0
        while freed < bytes_needed and self._heap:
            neg, key = heapq.heappop(self._heap)
            if self._next.get(key) != -neg:
                continue
            size = self._sizes[key]
            yield key
            if key in self._sizes:
                heapq.heappush(self._heap, (neg, key))  # kept by the caller
                return
            freed += size
