"""The state the parts of the store share; `CacheStore.__init__` sets all of it.

Each part (`layout`, `index`, `publish`, `removal`, `reconcile`) is a class of methods
over this state, and `CacheStore` is all of them at once: one object, one lock, one
in-memory view of the index, with the code of each job in its own module.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from edge.generation import Generation
from edge.policies.base import EvictionPolicy
from edge.store.entry import Entry


class StoreState:
    root: Path
    capacity: int
    policy: EvictionPolicy
    objects_dir: Path
    tmp_dir: Path
    _objects_prefix: str
    #: Taken by every method that writes or reads with the writer connection.
    _lock: threading.RLock
    #: This worker's view: entries read lately (bounded), the newest index id it knows.
    _entries: dict[str, Entry]
    _seen_id: int
    #: Hits gathered since the last `flush_access`.
    _access: dict[str, float]
    _hits: dict[str, int]
    evictions: int
    #: Told of each eviction (the metrics counter); called on the store's thread.
    on_evict: Callable[[], object] | None
    #: The writer connection, and a reader for the loop thread (`peek`): WAL readers
    #: never wait for the writer.
    _db: sqlite3.Connection
    _reader: sqlite3.Connection
    generation: Generation
