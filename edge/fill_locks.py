"""One exclusive lock per cache key across worker processes (who leads a fill)."""

from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path
from typing import Final

from edge.store import key_hash

_LOCK_SPAN: Final = 1 << 40


class KeyLocks:
    """One exclusive lock per key across processes: a byte of a shared lock file.

    Open-file-description locks (F_OFD_SETLK) conflict between any two open files, in one
    process or two, and vanish when the holder dies, so `kill -9` of a leader frees its
    objects for another worker.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @staticmethod
    def offset(key: str) -> int:
        return int(key_hash(key)[:10], 16) % _LOCK_SPAN

    def _op(self, kind: int, offset: int) -> bool:
        flock = struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, flock)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def try_acquire(self, key: str) -> bool:
        return self._op(fcntl.F_WRLCK, self.offset(key))

    def release(self, key: str) -> None:
        self._op(fcntl.F_UNLCK, self.offset(key))

    def held_elsewhere(self, key: str) -> bool:
        """True while another open file holds the key's lock (probe by taking it)."""
        off = self.offset(key)
        if self._op(fcntl.F_WRLCK, off):
            self._op(fcntl.F_UNLCK, off)
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)
