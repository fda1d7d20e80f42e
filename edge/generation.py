"""The cache's purge generation: two 8-byte counters in a file every worker maps.

A purge or an invalidation (`edge.store.CacheStore` removing objects on purpose, in any
process) writes a new value of the first (`read`) after the index rows and files are
gone; every worker reads it (one memory load, no system call) before it answers a
request, and on a change drops what it holds in memory beyond the index (RAM copies,
kept error answers, fills it would let the request join). So once a purge has answered,
no worker answers the purged bytes to a request that arrives after it. Evictions do not
bump it: a hit of an evicted object finds its file gone, and nothing stale is served.

The second (`purges`) moves only for a purge by title or prefix: a fill that began
before one is never published. An invalidation of one URL dooms only that URL's fills
(`CacheStore.removal_mark`), not every fill under way: otherwise any unsafe request, or
a Vary variant replacing a plain answer, would throw away the fills of unrelated URLs.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Final

_SIZE: Final = 16


class Generation:
    __slots__ = ("_map",)

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)  # zeros past the end; a counter present stays
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    def read(self) -> int:
        return struct.unpack_from("=Q", self._map, 0)[0]

    def purges(self) -> int:
        """The purge counter: moves on purges by title or prefix only."""
        return struct.unpack_from("=Q", self._map, 8)[0]

    def bump(self, *, purge: bool = False) -> None:
        """A new value (an aligned 8-byte store: readers see the old or the new one);
        with `purge`, the purge counter moves too, first: a reader that sees the first
        change also sees the purge."""
        for offset in (8, 0) if purge else (0,):
            value = struct.unpack_from("=Q", self._map, offset)[0]
            struct.pack_into("=Q", self._map, offset, (value + 1 + os.getpid()) & (2**64 - 1))

    def close(self) -> None:
        self._map.close()
