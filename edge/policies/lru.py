"""LRU, the store's baseline policy: least recently used first, and pinned objects
(what the fill manifest says this appliance must hold) only after every unpinned one, so
that a burst of misses cannot flush them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator


class LRU:
    """Least recently used first; pinned objects after all unpinned ones."""

    __slots__ = ("_pinned", "_plain")

    def __init__(self) -> None:
        self._plain: OrderedDict[str, int] = OrderedDict()
        self._pinned: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._plain) + len(self._pinned)

    def on_insert(self, key: str, size: int, pinned: bool) -> None:
        self._plain.pop(key, None)
        self._pinned.pop(key, None)
        (self._pinned if pinned else self._plain)[key] = size

    def on_access(self, key: str) -> None:
        if key in self._plain:
            self._plain.move_to_end(key)
        elif key in self._pinned:
            self._pinned.move_to_end(key)

    def on_remove(self, key: str) -> None:
        self._plain.pop(key, None)
        self._pinned.pop(key, None)

    def victims(self, bytes_needed: int) -> Iterator[str]:
        """Oldest first until `bytes_needed` would be freed. Lazy: the head is read again
        after each key, which the caller has usually removed, so a victim costs O(1)
        instead of a copy of the table; if the caller keeps a key, the rest of that table
        comes from a copy. Either way the caller may remove keys while iterating."""
        freed = 0
        for table in (self._plain, self._pinned):
            while table and freed < bytes_needed:
                key, size = next(iter(table.items()))
                freed += size
                yield key
                if key in table:  # kept: walk the rest from a copy
                    for other, osize in list(table.items()):
                        if other == key:
                            continue
                        if freed >= bytes_needed:
                            return
                        freed += osize
                        yield other
                    break
