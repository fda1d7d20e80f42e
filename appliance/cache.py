"""What the appliance needs from the edge's cache store, as a structural interface.

`edge.store.CacheStore` satisfies it; naming only these methods keeps the appliance's
dependency on the edge small and visible. Methods block (disk and SQLite), so async
callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Stats(Protocol):
    objects: int
    bytes_used: int
    capacity: int

    @property
    def free_bytes(self) -> int: ...


class Entry(Protocol):
    key: str
    title: str
    path: str
    size: int
    content_type: str
    sha256: str | None
    etag: str | None
    last_modified: float | None
    cache_control: str | None


class Store(Protocol):
    def has(self, title: str, path: str) -> bool: ...

    def get(self, key: str) -> Any: ...

    def lookup(self, key: str) -> Any: ...

    def file_path(self, entry: Any) -> Path: ...

    def import_file(
        self,
        title: str,
        path: str,
        src: Path,
        size: int,
        sha256: str | None,
        *,
        content_type: str,
        cache_control: str | None = None,
        pinned: bool = False,
    ) -> Any: ...

    def pin_title(self, title: str, pinned: bool = True) -> int: ...

    def unpin_title(self, title: str) -> int: ...

    def purge(self, *, title: str | None = None, prefix: str | None = None) -> int: ...

    def stats(self) -> Any: ...
