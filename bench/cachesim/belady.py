"""Offline (clairvoyant) replacement policies: Belady and Belady-Size.

Both are *feasible* offline policies: they run in the same replay as the online ones and
obey the same capacity, so their byte hit ratio is a lower bound on the offline optimum's
(OPT). The upper bounds on OPT are in `bench.cachesim.bounds`; OPT lies between the two.

**Belady** (MIN): evict the object whose next request is furthest away. For equal sizes it
is the optimum; for variable sizes and byte hit ratio it is byte-level MIN applied to whole
objects, a heuristic (the exact optimum is NP-hard; Berger et al., "Practical Bounds on
Optimal Caching with Variable Object Sizes", SIGMETRICS 2018). Admission: an object that
fits in the free space is always stored (holding it costs nothing: it is the first victim
if nothing else is further away); one that does not fit is stored only if enough bytes of
cached objects are asked for later than it is, and those are the bytes evicted; otherwise
it bypasses the cache and nothing is evicted.

**Belady-Size**: evict the object with the largest ``size × time to its next request``
(the resource an object holds until it earns its hit), among `SAMPLE` cached objects
drawn at random, as Berger et al. evaluate it; an object that does not fit is stored only
if its own product is smaller than the largest sampled one.

Both speak the store's four-call contract plus ``see(next_request, now)``, which the
simulator calls before each request with the index of the same object's next request on
the same appliance (`NEVER` if none) and the current request's index, and
``admits(size, free)`` asked on a miss.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Final

from edge.policies.base import Key

NEVER: Final = 2**62
COMPACT_FACTOR: Final = 4
SAMPLE: Final = 64


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

    def see(self, next_request: int, now: int = 0) -> None:
        """The current request's object is next asked for at index `next_request`."""
        self._upcoming = next_request

    def admits(self, size: int, free: int) -> bool:
        """Whether to store the object just seen, `free` bytes being unused (module text)."""
        if size <= free:
            return True
        if self._upcoming >= NEVER:
            return False
        need = size - free
        popped: list[tuple[int, Key]] = []
        freed = 0
        while self._heap and freed < need:
            entry = heapq.heappop(self._heap)
            neg, key = entry
            if self._next.get(key) != -neg:
                continue  # stale
            popped.append(entry)
            if -neg <= self._upcoming:
                break  # everything left is asked for sooner than the newcomer
            freed += self._sizes[key]
        for entry in popped:
            heapq.heappush(self._heap, entry)
        return freed >= need

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


class BeladySize:
    name: Final = "belady-size"
    __slots__ = ("_keys", "_next", "_now", "_pos", "_rng", "_sizes", "_upcoming")

    def __init__(self, seed: int = 0) -> None:
        self._next: dict[Key, int] = {}
        self._sizes: dict[Key, int] = {}
        self._keys: list[Key] = []  # for O(1) random sampling
        self._pos: dict[Key, int] = {}
        self._rng = random.Random(seed)
        self._upcoming = NEVER
        self._now = 0

    def __len__(self) -> int:
        return len(self._sizes)

    def see(self, next_request: int, now: int = 0) -> None:
        self._upcoming = next_request
        self._now = now

    def _cost(self, key: Key) -> int:
        return self._sizes[key] * (self._next[key] - self._now)

    def _worst(self) -> Key | None:
        keys = self._keys
        if not keys:
            return None
        if len(keys) <= SAMPLE:
            return max(keys, key=self._cost)
        return max((keys[self._rng.randrange(len(keys))] for _ in range(SAMPLE)),
                   key=self._cost)

    def admits(self, size: int, free: int) -> bool:
        if size <= free:
            return True
        if self._upcoming >= NEVER:
            return False
        worst = self._worst()
        return worst is not None and self._cost(worst) > size * (self._upcoming - self._now)

    def on_insert(self, key: Key, size: int, pinned: bool) -> None:
        if key not in self._pos:
            self._pos[key] = len(self._keys)
            self._keys.append(key)
        self._sizes[key] = size
        self._next[key] = self._upcoming

    def on_access(self, key: Key) -> None:
        if key in self._sizes:
            self._next[key] = self._upcoming

    def on_remove(self, key: Key) -> None:
        if self._sizes.pop(key, None) is None:
            return
        self._next.pop(key, None)
        i = self._pos.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[i] = last
            self._pos[last] = i

    def victims(self, bytes_needed: int) -> Iterator[Key]:
        freed = 0
        while freed < bytes_needed:
            key = self._worst()
            if key is None:
                return
            size = self._sizes[key]
            yield key
            if key in self._sizes:
                return  # kept by the caller
            freed += size
