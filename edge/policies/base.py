"""The eviction-policy contract these policies implement, and the pinned tier they share.

A policy only orders keys; the store owns sizes on disk, the index and the files. The
store takes any object with these four calls (a structural `Protocol`, so that a policy
needs no import from the store)::

    on_insert(key, size, pinned)   a new object (or a new version, or a pin change)
    on_access(key)                 a hit
    on_remove(key)                 gone (evicted, purged, replaced by another worker)
    victims(bytes_needed)          keys to evict, best victim first, lazily

`victims` is a generator the store consumes while it deletes: after each key it yields,
the store either calls `on_remove(key)` or skips the key (the object being written is
protected). A policy must cope with both, and must never loop forever on a skipped key.

Pinned objects (what the fill manifest says this appliance must hold) are offered only
after every unpinned object, least recently used first: `PinnedTier` does that bookkeeping
once for every policy here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Protocol, TypeAlias

Key: TypeAlias = Hashable  # the store uses str; the simulator uses int ids for speed


class EvictionPolicy(Protocol):
    def on_insert(self, key: str, size: int, pinned: bool) -> None: ...

    def on_access(self, key: str) -> None: ...

    def on_remove(self, key: str) -> None: ...

    def victims(self, bytes_needed: int) -> Iterator[str]: ...

    def __len__(self) -> int: ...


class PinnedTier:
    """Manifest-pinned objects in least-recently-used order, offered after everything else."""

    __slots__ = ("bytes", "order")

    def __init__(self) -> None:
        self.order: OrderedDict[Key, int] = OrderedDict()
        self.bytes = 0

    def __contains__(self, key: Key) -> bool:
        return key in self.order

    def __len__(self) -> int:
        return len(self.order)

    def add(self, key: Key, size: int) -> None:
        self.discard(key)
        self.order[key] = size
        self.bytes += size

    def discard(self, key: Key) -> bool:
        size = self.order.pop(key, None)
        if size is None:
            return False
        self.bytes -= size
        return True

    def touch(self, key: Key) -> bool:
        if key in self.order:
            self.order.move_to_end(key)
            return True
        return False

    def victims(self, bytes_needed: int) -> Iterator[Key]:
        """Oldest pinned first; a key the caller skipped is moved to the back and the walk
        ends when it comes round again (so a protected key never loops)."""
        freed = 0
        skipped: set[Key] = set()
        while freed < bytes_needed and self.order:
            key = next(iter(self.order))
            if key in skipped:
                return
            size = self.order[key]
            yield key
            if key in self.order:  # the caller kept it
                skipped.add(key)
                self.order.move_to_end(key)
            else:
                freed += size
