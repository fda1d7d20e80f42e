"""The disk cache: objects as files, an SQLite index, and a byte budget.

Layout under the cache directory::

    index.db            SQLite (WAL): one row per object, plus byte totals kept by triggers
    objects/ab/<h>-<r>  one file per object version; <h> hashes the key, <r> is random so a
                        new version never overwrites a file that is still being sent
    tmp/<h>.part        an object being filled (see `edge.fill`); never served as a hit
    tmp/<h>.json        the filling response's headers, for followers in other workers
    fill.lock           byte-range locks, one byte per object key (see `edge.fill`)

Crash safety: an object becomes visible only through `publish`, which checks the size (and
sha256 when known), fsyncs the file, records a *pending* row, renames the file into
`objects/`, fsyncs the directory and marks the row *ready*. `reconcile` (run at start,
before any worker) drops temp files, adopts pending rows whose file arrived whole, and
drops rows without files and files without rows, so the index always agrees with the disk
and a partial object is never served.

Several worker processes share one store: SQLite serialises writers, the byte total lives
in the database (triggers), and each worker keeps an in-memory view (entries and the
eviction policy) that it refreshes from rows added by others (`sync`). A stale view is
harmless: a file evicted by another worker fails to open and the caller asks `lookup`.

`CacheStore` is the facade; each job is a module of its own: `layout` (paths), `index`
(the SQLite index and this worker's view of it), `publish` (making a fill an object,
eviction), `removal` (purges and invalidations), `reconcile` (start-up).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from edge.generation import Generation
from edge.policies.base import EvictionPolicy
from edge.policies.lru import LRU
from edge.store.entry import Entry, Purged, ReconcileReport, StoreStats, object_key
from edge.store.index import Index, connect
from edge.store.layout import Layout, key_hash
from edge.store.publish import Publishing
from edge.store.reconcile import Reconciling
from edge.store.removal import Removals
from vcdn.errors import StoreError

__all__ = [
    "CacheStore",
    "Entry",
    "Purged",
    "ReconcileReport",
    "StoreStats",
    "key_hash",
    "object_key",
]


class CacheStore(Layout, Index, Publishing, Removals, Reconciling):
    """Disk-backed object store bounded by `capacity` bytes (see module doc).

    Methods do blocking file and database I/O; async callers run them in a thread. One
    lock makes an instance safe to share between threads.
    """

    def __init__(self, root: Path, capacity: int, policy: EvictionPolicy | None = None) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self.policy: EvictionPolicy = policy if policy is not None else LRU()
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self._objects_prefix = f"{self.objects_dir}/"
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._seen_id = 0
        self._access: dict[str, float] = {}
        self._hits: dict[str, int] = {}
        self.evictions = 0
        #: Told of each eviction (the metrics counter); called on the store's thread.
        self.on_evict: Callable[[], object] | None = None
        try:
            self.objects_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
            self._db, self._reader = connect(self.root)
            self.generation = Generation(self.root / "generation")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the cache at '{self.root}': {exc}.") from None

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self.flush_access()
            self._db.close()
            self._reader.close()
            self.generation.close()
