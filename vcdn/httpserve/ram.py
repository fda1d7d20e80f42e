"""The RAM tier of hot small objects, for the origin and the edge: a byte-bounded LRU.

What a value is (an edge object's bytes keyed by its file, an origin `HotEntry` keyed by
its path) is the owner's; the tier only bounds the bytes held and the number of entries,
and refuses a value larger than `object_max`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class RamTier(Generic[V]):
    __slots__ = ("_items", "capacity", "max_entries", "object_max", "used")

    def __init__(self, capacity: int, object_max: int, max_entries: int = 100_000) -> None:
        self.capacity = capacity
        self.object_max = object_max
        self.max_entries = max_entries
        self.used = 0
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: V, cost: int, *, body: int = 0) -> None:
        """Hold `value` (costing `cost` bytes, `body` of them the object's own)."""
        if body > self.object_max or cost > self.capacity or self.capacity <= 0:
            return
        self.discard(key)
        self._items[key] = (value, cost)
        self.used += cost
        while self.used > self.capacity or len(self._items) > self.max_entries:
            _, (_, old) = self._items.popitem(last=False)
            self.used -= old

    def replace(self, key: str, value: V) -> None:
        """Swap a value for one of the same cost without touching LRU order."""
        item = self._items.get(key)
        if item is not None:
            self._items[key] = (value, item[1])

    def discard(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.used -= item[1]

    def clear(self) -> None:
        self._items.clear()
        self.used = 0
