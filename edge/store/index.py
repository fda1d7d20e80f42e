"""The SQLite index: one row per object, byte totals kept by triggers, pinned titles,
invalidations; and this worker's in-memory view of it (entries, eviction order).

Several worker processes share one index: SQLite serialises writers, the byte total lives
in the database, and each worker refreshes its view from rows added by others (`sync`).
A stale view is harmless: a file evicted by another worker fails to open and the caller
asks `lookup`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

from edge.store.entry import Entry, StoreStats, object_key
from edge.store.state import StoreState
from edge.vary import primary_of

#: Entries (headers and all) a worker keeps in memory; the rest are read from the index.
ENTRY_CACHE: Final = 20_000
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    path TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT,
    etag TEXT,
    last_modified REAL,
    content_type TEXT NOT NULL,
    cache_control TEXT,
    headers TEXT NOT NULL DEFAULT '[]',
    stored_at REAL NOT NULL,
    response_time REAL NOT NULL,
    initial_age REAL NOT NULL DEFAULT 0,
    lifetime REAL NOT NULL,
    last_access REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ready'
);
CREATE INDEX IF NOT EXISTS objects_title ON objects(title);
CREATE TABLE IF NOT EXISTS totals (
    one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER, count INTEGER
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS pinned_titles (title TEXT PRIMARY KEY);
-- The last invalidation of each URL (its primary key): a fill of that URL which began
-- before it is not published (`removal_mark`). Ids are never reused (AUTOINCREMENT).
CREATE TABLE IF NOT EXISTS removals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, at REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS objects_ins AFTER INSERT ON objects BEGIN
    UPDATE totals SET bytes = bytes + NEW.size, count = count + 1;
END;
CREATE TRIGGER IF NOT EXISTS objects_del AFTER DELETE ON objects BEGIN
    UPDATE totals SET bytes = bytes - OLD.size, count = count - 1;
END;
"""
_COLUMNS: Final = (
    "id, key, title, path, file, size, sha256, etag, last_modified, content_type, "
    "cache_control, headers, stored_at, response_time, initial_age, lifetime, pinned"
)
_NO_HEADERS: Final[tuple[tuple[str, str], ...]] = ()


def per_user(headers: str) -> bool:
    """An object stored with Set-Cookie (by a version that still stored those): never
    to be served to anyone again (docs/security.md, "Shared cache")."""
    return headers != "[]" and '"set-cookie"' in headers.lower()


def row_entry(row: sqlite3.Row | tuple) -> Entry:
    (
        id_,
        key,
        title,
        path,
        file,
        size,
        sha256,
        etag,
        lm,
        ctype,
        cc,
        headers,
        stored_at,
        response_time,
        initial_age,
        lifetime,
        pinned,
    ) = row
    return Entry(
        key=key,
        title=title,
        path=path,
        size=size,
        content_type=ctype,
        file=file,
        sha256=sha256,
        etag=etag,
        last_modified=lm,
        cache_control=cc,
        headers=_NO_HEADERS if headers == "[]" else tuple(tuple(p) for p in json.loads(headers)),  # type: ignore[misc]
        stored_at=stored_at,
        response_time=response_time,
        initial_age=initial_age,
        lifetime=lifetime,
        pinned=bool(pinned),
        id=id_,
    )


def removal_id(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT id FROM removals WHERE key = ?", (primary_of(key),)).fetchone()
    return int(row[0]) if row is not None else 0


def connect(root: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The writer and the reader connection of the index under `root`, schema applied."""
    db = sqlite3.connect(
        root / "index.db", timeout=30, isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a crash of the process loses nothing; a power loss may
    # lose the last commits, and then `reconcile` drops the orphaned files.
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    # A second connection for `peek` on the event loop thread: WAL readers never
    # wait for the writer, so a lookup never sits behind another fill's fsync.
    reader = sqlite3.connect(
        root / "index.db", timeout=30, isolation_level=None, check_same_thread=False
    )
    return db, reader


class Index(StoreState):
    """Reads of the index and the view, hits, metadata updates, pins, totals."""

    def load(self) -> int:
        """Read the eviction order (key, size, pin) of the whole index into memory.

        Entries themselves are read on first use (`peek`/`lookup`) and kept in a bounded
        table, so a worker's memory does not grow with the number of objects on disk.
        """
        with self._lock:
            self._entries.clear()
            n = 0
            cur = self._db.execute(
                "SELECT id, key, size, pinned FROM objects WHERE state = 'ready' "
                "ORDER BY last_access"
            )
            while rows := cur.fetchmany(10_000):
                for id_, key, size, pinned in rows:
                    self.policy.on_insert(key, size, bool(pinned))
                    if id_ > self._seen_id:
                        self._seen_id = id_
                n += len(rows)
            return n

    def sync(self) -> int:
        """Learn objects other workers added since we last looked (for eviction)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, size, pinned FROM objects WHERE id > ? AND state = 'ready'",
                (self._seen_id,),
            ).fetchall()
            for id_, key, size, pinned in rows:
                self.policy.on_insert(key, size, bool(pinned))
                if id_ > self._seen_id:
                    self._seen_id = id_
            return len(rows)

    def _remember(self, entry: Entry) -> None:
        entries = self._entries
        if entry.key not in entries and len(entries) >= ENTRY_CACHE:
            del entries[next(iter(entries))]  # oldest remembered first; it can be re-read
        entries[entry.key] = entry
        self.policy.on_insert(entry.key, entry.size, entry.pinned)
        self._seen_id = max(self._seen_id, entry.id)

    # --- lookups -----------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """The entry this worker knows, without touching the database (the hit path)."""
        return self._entries.get(key)

    def lookup(self, key: str) -> Entry | None:
        """The current entry from the index (another worker may have filled or evicted it)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM objects WHERE key = ? AND state = 'ready'", (key,)
            ).fetchone()
            if row is None:
                self.forget(key)
                return None
            entry = row_entry(row)
            self._remember(entry)
            return entry

    def peek(self, key: str) -> Entry | None:
        """Like `lookup`, without taking the store lock; for one thread only (the loop)."""
        row = self._reader.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE key = ? AND state = 'ready'", (key,)
        ).fetchone()
        if row is None:
            return None
        entry = row_entry(row)
        known = self._entries.get(key)
        if known is None or known.id != entry.id:
            with self._lock:
                self._remember(entry)
        return entry

    def variants(self, primary: str) -> list[Entry]:
        """The stored Vary variants of `primary` (keys ``primary + "\\n" + ...``,
        `edge.vary`): one index range read, like `peek` for the loop thread."""
        rows = self._reader.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE key > ? AND key < ? AND state = 'ready'",
            (primary + "\n", primary + "\x0b"),
        ).fetchall()
        return [row_entry(row) for row in rows]

    def forget(self, key: str) -> None:
        """Drop our in-memory view of `key` (its file vanished under us)."""
        with self._lock:
            self._entries.pop(key, None)
            self.policy.on_remove(key)

    def has(self, title: str, path: str) -> bool:
        entry = self.get(object_key(title, path)) or self.lookup(object_key(title, path))
        return entry is not None

    def keys(self) -> Iterator[str]:
        """Every stored key, from the index."""
        rows = self._reader.execute("SELECT key FROM objects WHERE state = 'ready'").fetchall()
        return (key for (key,) in rows)

    def removed_since(self, last: int) -> tuple[int, list[str]]:
        """The URLs invalidated after the invalidation `last` (0: from the start), and the
        newest one's id: what a worker drops from its memory of kept answers. For the loop
        thread only, like `peek`."""
        rows = self._reader.execute(
            "SELECT id, key FROM removals WHERE id > ?", (last,)
        ).fetchall()
        return max((row[0] for row in rows), default=last), [key for _, key in rows]

    def last_removal(self) -> int:
        """The newest invalidation's id (0: none yet); where `removed_since` starts."""
        return int(self._reader.execute("SELECT coalesce(max(id), 0) FROM removals").fetchone()[0])

    def removal_mark(self, key: str) -> int:
        """Which invalidation of `key`'s URL is the last one (0: none): read when a fill
        begins and handed to `publish`. For the loop thread only, like `peek`."""
        return removal_id(self._reader, key)

    # --- hits, metadata, pins ----------------------------------------------------------

    def touch(self, key: str, now: float | None = None) -> None:
        """Record a hit; persisted in batches by `flush_access`."""
        self.policy.on_access(key)
        self._access[key] = time.time() if now is None else now
        self._hits[key] = self._hits.get(key, 0) + 1

    def flush_access(self) -> int:
        """Write last-access times and hit counts gathered since the last flush."""
        with self._lock:
            access, hits = self._access, self._hits
            self._access, self._hits = {}, {}
            if not access:
                return 0
            self._db.executemany(
                "UPDATE objects SET last_access = ?, hits = hits + ? WHERE key = ?",
                [(t, hits.get(k, 0), k) for k, t in access.items()],
            )
            return len(access)

    def refresh(self, key: str, **changes: object) -> Entry | None:
        """Update a stored object's metadata (after a 304, RFC 9111 §4.3.4)."""
        with self._lock:
            entry = self.lookup(key)
            if entry is None:
                return None
            entry = replace(entry, **changes)  # type: ignore[arg-type]
            self._db.execute(
                "UPDATE objects SET etag=?, last_modified=?, content_type=?, cache_control=?, "
                "headers=?, response_time=?, initial_age=?, lifetime=? WHERE key = ?",
                (
                    entry.etag,
                    entry.last_modified,
                    entry.content_type,
                    entry.cache_control,
                    json.dumps(entry.headers),
                    entry.response_time,
                    entry.initial_age,
                    entry.lifetime,
                    key,
                ),
            )
            self._entries[key] = entry
            return entry

    def pin_title(self, title: str, pinned: bool = True) -> int:
        """Pin (or unpin) a title: its objects, present and future, are evicted last."""
        with self._lock:
            if pinned:
                self._db.execute("INSERT OR IGNORE INTO pinned_titles VALUES (?)", (title,))
            else:
                self._db.execute("DELETE FROM pinned_titles WHERE title = ?", (title,))
            n = self._db.execute(
                "UPDATE objects SET pinned = ? WHERE title = ?", (int(pinned), title)
            ).rowcount
            for key, size in self._db.execute(
                "SELECT key, size FROM objects WHERE title = ? AND state = 'ready'", (title,)
            ).fetchall():
                self.policy.on_insert(key, size, pinned)
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries[key] = replace(entry, pinned=pinned)
            return n

    def unpin_title(self, title: str) -> int:
        return self.pin_title(title, pinned=False)

    def is_pinned_title(self, title: str) -> bool:
        """Is `title` in this cache's fill manifest (pinned)? One indexed read."""
        with self._lock:
            return self._title_pinned(title)

    def _title_pinned(self, title: str) -> bool:
        return (
            bool(title)
            and self._db.execute("SELECT 1 FROM pinned_titles WHERE title = ?", (title,)).fetchone()
            is not None
        )

    def stats(self) -> StoreStats:
        with self._lock:
            used, count = self._db.execute("SELECT bytes, count FROM totals").fetchone()
            pins = self._db.execute("SELECT count(*) FROM pinned_titles").fetchone()[0]
        return StoreStats(
            objects=count, bytes_used=used, capacity=self.capacity, pinned_titles=pins
        )
