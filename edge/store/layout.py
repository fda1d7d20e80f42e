"""Where the store's files are, under the cache directory (see `edge.store`)::

    objects/ab/<h>-<r>  one file per object version; <h> hashes the key, <r> is random so a
                        new version never overwrites a file that is still being sent
    tmp/<h>.part        an object being filled (see `edge.fill`); never served as a hit
    tmp/<h>.json        the filling response's headers, for followers in other workers
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

from edge.store.entry import Entry
from edge.store.state import StoreState


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


class Layout(StoreState):
    """Paths of objects and of fills under way."""

    def file_path(self, entry: Entry) -> Path:
        return self.objects_dir / entry.file[:2] / entry.file

    def file_str(self, entry: Entry) -> str:
        """`file_path` as a string, without pathlib (the hit path calls it per request)."""
        return f"{self._objects_prefix}{entry.file[:2]}/{entry.file}"

    def temp_paths(self, key: str) -> tuple[Path, Path]:
        """The growing file and its headers sidecar for a fill of `key`."""
        h = key_hash(key)
        return self.tmp_dir / f"{h}.part", self.tmp_dir / f"{h}.json"


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
