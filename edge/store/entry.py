"""What the store holds and reports: entries, statistics, the reconcile report (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from vcdn.errors import StoreError


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object: where its bytes are and what to say about them."""

    key: str
    title: str
    path: str
    size: int
    content_type: str
    file: str = ""
    sha256: str | None = None
    etag: str | None = None
    last_modified: float | None = None
    #: The upstream's Cache-Control, replayed to clients (None: the edge's media policy).
    cache_control: str | None = None
    #: Other end-to-end response fields to replay (proxy mode), in order.
    headers: tuple[tuple[str, str], ...] = ()
    stored_at: float = 0.0
    response_time: float = 0.0
    initial_age: float = 0.0
    lifetime: float = 0.0
    pinned: bool = False
    id: int = 0


@dataclass(frozen=True, slots=True)
class StoreStats:
    objects: int
    bytes_used: int
    capacity: int
    pinned_titles: int

    @property
    def free_bytes(self) -> int:
        return max(0, self.capacity - self.bytes_used)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    temp_removed: int = 0
    adopted: int = 0
    rows_dropped: int = 0
    files_dropped: int = 0
    objects: int = 0
    seconds: float = 0.0


class Purged(StoreError):
    """A fill finished after a purge of its object: not stored."""


def object_key(title: str, path: str) -> str:
    """The key of ``/s/{token}/{title}/{path}`` and ``/v/{title}/{path}`` objects."""
    return f"{title}/{path}"
