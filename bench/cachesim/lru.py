"""The store's LRU (`edge.eviction.LRU`) with a lazy `victims`, for long replays.

`edge.eviction.LRU.victims` copies its whole table before yielding the first key, which
costs O(objects) per miss: fine for a store that evicts a few objects a second, minutes
per replay of a million requests. This subclass yields the same keys in the same order
(unpinned least recently used first, then pinned) by walking from the head, and keeps
every other call of the real class. (The lazy walk is proposed for `edge.eviction`.)
"""

from __future__ import annotations

from collections.abc import Iterator

from edge.eviction import LRU


class LazyLRU(LRU):
    __slots__ = ()

    def victims(self, bytes_needed: int) -> Iterator[str]:
        freed = 0
        for table in (self._plain, self._pinned):
            skipped: set[str] = set()
            while freed < bytes_needed and table:
                key, size = next(iter(table.items()))
                if key in skipped:
                    break
                yield key
                if key in table:  # the caller kept it
                    skipped.add(key)
                    table.move_to_end(key)
                else:
                    freed += size
