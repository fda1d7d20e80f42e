"""The cache's purge generation: one 8-byte counter in a file every worker maps.

A purge or an invalidation (`edge.store.CacheStore` removing objects on purpose, in any
process) writes a new value after the index rows and files are gone; every worker reads
the value (one memory load, no system call) before it answers a request, and on a change
drops what it holds in memory beyond the index (RAM copies, kept error answers, fills it
would let the request join). So once a purge has answered, no worker answers the purged
bytes to a request that arrives after it. Evictions do not bump it: a hit of an evicted
object finds its file gone, and nothing stale is served.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Final

_SIZE: Final = 8


class Generation:
    __slots__ = ("_map",)

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.pwrite(fd, b"\0" * _SIZE, 0)
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    def read(self) -> int:
        return struct.unpack_from("=Q", self._map, 0)[0]

    def bump(self) -> None:
        """A new value (an aligned 8-byte store: readers see the old or the new one)."""
        value = struct.unpack_from("=Q", self._map, 0)[0]
        struct.pack_into("=Q", self._map, 0, (value + 1 + os.getpid()) & (2**64 - 1))

    def close(self) -> None:
        self._map.close()
