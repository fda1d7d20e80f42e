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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from edge.eviction import LRU, EvictionPolicy
from edge.generation import Generation
from edge.vary import primary_of
from vcdn.checksums import sha256_file
from vcdn.errors import DiskFull, IntegrityError, StoreError

COPY_CHUNK: Final = 1024 * 1024
#: Entries (headers and all) a worker keeps in memory; the rest are read from the index.
ENTRY_CACHE: Final = 20_000
#: How long an invalidation is remembered for the fills of its URL under way (seconds):
#: a fill that lasts longer and spans an invalidation may still be published.
REMOVALS_KEPT: Final = 86_400.0
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


_NO_HEADERS: Final[tuple[tuple[str, str], ...]] = ()


def _per_user(headers: str) -> bool:
    """An object stored with Set-Cookie (by a version that still stored those): never
    to be served to anyone again (docs/security.md, "Shared cache")."""
    return headers != "[]" and '"set-cookie"' in headers.lower()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def object_key(title: str, path: str) -> str:
    """The key of ``/s/{token}/{title}/{path}`` and ``/v/{title}/{path}`` objects."""
    return f"{title}/{path}"


def _row_entry(row: sqlite3.Row | tuple) -> Entry:
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


class CacheStore:
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
            self._db = sqlite3.connect(
                self.root / "index.db", timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a crash of the process loses nothing; a power loss may
            # lose the last commits, and then `reconcile` drops the orphaned files.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            # A second connection for `peek` on the event loop thread: WAL readers never
            # wait for the writer, so a lookup never sits behind another fill's fsync.
            self._reader = sqlite3.connect(
                self.root / "index.db", timeout=30, isolation_level=None, check_same_thread=False
            )
            self.generation = Generation(self.root / "generation")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the cache at '{self.root}': {exc}.") from None

    # --- paths -------------------------------------------------------------------------

    def file_path(self, entry: Entry) -> Path:
        return self.objects_dir / entry.file[:2] / entry.file

    def file_str(self, entry: Entry) -> str:
        """`file_path` as a string, without pathlib (the hit path calls it per request)."""
        return f"{self._objects_prefix}{entry.file[:2]}/{entry.file}"

    def temp_paths(self, key: str) -> tuple[Path, Path]:
        """The growing file and its headers sidecar for a fill of `key`."""
        h = key_hash(key)
        return self.tmp_dir / f"{h}.part", self.tmp_dir / f"{h}.json"

    # --- start-up ----------------------------------------------------------------------

    def reconcile(self, *, load: bool = True) -> ReconcileReport:
        """Make index and disk agree after any crash. Only while no worker uses the store.

        With `load`, this store's eviction order is read afterwards (`load`).
        """
        start = time.monotonic()
        temp_removed = adopted = rows_dropped = files_dropped = 0
        with self._lock:
            for p in self.tmp_dir.iterdir():
                _unlink(p)
                temp_removed += 1
            on_disk: dict[str, int] = {}
            for sub in self.objects_dir.iterdir():
                if not sub.is_dir():
                    _unlink(sub)
                    continue
                with os.scandir(sub) as it:
                    for de in it:
                        on_disk[de.name] = de.stat().st_size
            rows = self._db.execute(
                "SELECT id, file, size, sha256, state, headers FROM objects"
            ).fetchall()
            drop: list[int] = []
            ready: list[int] = []
            known: set[str] = set()
            for id_, file, size, sha256, state, headers in rows:
                have = on_disk.get(file)
                if have != size or _per_user(headers):
                    drop.append(id_)
                    continue
                if state != "ready":
                    # Renamed before the crash but not yet marked: adopt after a check.
                    if sha256 and sha256_file(self.objects_dir / file[:2] / file) != sha256:
                        drop.append(id_)
                        continue
                    ready.append(id_)
                known.add(file)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM objects WHERE id = ?", [(i,) for i in drop])
                self._db.executemany(
                    "UPDATE objects SET state = 'ready' WHERE id = ?", [(i,) for i in ready]
                )
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            rows_dropped, adopted = len(drop), len(ready)
            for name in on_disk.keys() - known:
                _unlink(self.objects_dir / name[:2] / name)
                files_dropped += 1
        objects = self.load() if load else len(known)
        return ReconcileReport(
            temp_removed,
            adopted,
            rows_dropped,
            files_dropped,
            objects,
            round(time.monotonic() - start, 3),
        )

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
            entry = _row_entry(row)
            self._remember(entry)
            return entry

    def peek(self, key: str) -> Entry | None:
        """Like `lookup`, without taking the store lock; for one thread only (the loop)."""
        row = self._reader.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE key = ? AND state = 'ready'", (key,)
        ).fetchone()
        if row is None:
            return None
        entry = _row_entry(row)
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
        return [_row_entry(row) for row in rows]

    def remove_variants(self, primary: str, *, invalidate: bool = True) -> int:
        """Remove every Vary variant of `primary` (an unsafe method, or a plain answer
        with `invalidate=False`, replaced them)."""
        return self._delete(
            "key > ? AND key < ?", (primary + "\n", primary + "\x0b"), always=False,
            invalidate=invalidate,
        )

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

    # --- writes ------------------------------------------------------------------------

    def publish(
        self,
        draft: Entry,
        part: Path,
        *,
        fd: int | None = None,
        generation: int | None = None,
        mark: int | None = None,
    ) -> Entry:
        """Make the fully written temp file `part` the object `draft.key` (see module doc).

        Raises IntegrityError when the bytes disagree with `draft.size` or `draft.sha256`
        (the temp file is then removed), DiskFull when nothing can be evicted to make room,
        Purged when `generation` (`Generation.purges`, read when the fill began) is no
        longer current, or `mark` (`removal_mark`, read then) no longer the URL's: a purge
        or an invalidation of this URL came in between, and its bytes must not come back.
        """
        try:
            size = os.fstat(fd).st_size if fd is not None else os.stat(part).st_size
            if size != draft.size:
                raise IntegrityError(
                    f"Object {draft.key!r} arrived with {size} bytes, expected {draft.size}."
                )
            if draft.sha256 and sha256_file(part) != draft.sha256.lower():
                raise IntegrityError(f"Object {draft.key!r} does not match its sha256.")
            if draft.size > self.capacity:
                raise DiskFull(
                    f"Object {draft.key!r} ({draft.size} bytes) is larger than the cache "
                    f"capacity ({self.capacity} bytes)."
                )
            if fd is not None:
                os.fsync(fd)
            else:
                with open(part, "rb") as fh:
                    os.fsync(fh.fileno())
        except BaseException:
            _unlink(part)
            raise
        name = f"{key_hash(draft.key)}-{secrets.token_hex(4)}"
        final = self.objects_dir / name[:2] / name
        with self._lock:
            now = time.time()
            pinned = draft.pinned or self._title_pinned(draft.title)
            entry = replace(draft, file=name, stored_at=now, pinned=pinned)
            stale_files: list[str] = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if generation is not None and self.generation.purges() != generation:
                    raise Purged(f"{draft.key!r} was purged while it was being filled.")
                if mark is not None and _mark(self._db, draft.key) != mark:
                    raise Purged(f"{draft.key!r} was invalidated while it was being filled.")
                old = self._db.execute(
                    "SELECT file, size FROM objects WHERE key = ?", (draft.key,)
                ).fetchone()
                if old is not None:
                    self._db.execute("DELETE FROM objects WHERE key = ?", (draft.key,))
                    stale_files.append(old[0])
                stale_files += self._make_room(draft.size, protect=draft.key)
                cur = self._db.execute(
                    "INSERT INTO objects (key, title, path, file, size, sha256, etag, "
                    "last_modified, content_type, cache_control, headers, stored_at, "
                    "response_time, initial_age, lifetime, last_access, pinned, state) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending')",
                    (
                        entry.key,
                        entry.title,
                        entry.path,
                        name,
                        entry.size,
                        entry.sha256,
                        entry.etag,
                        entry.last_modified,
                        entry.content_type,
                        entry.cache_control,
                        json.dumps(entry.headers),
                        now,
                        entry.response_time,
                        entry.initial_age,
                        entry.lifetime,
                        now,
                        int(pinned),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                _unlink(part)
                raise
            entry = replace(entry, id=int(cur.lastrowid or 0))
            for file in stale_files:
                _unlink(self.objects_dir / file[:2] / file)
            try:
                final.parent.mkdir(exist_ok=True)
                os.rename(part, final)
                _fsync_dir(final.parent)
            except OSError as exc:
                self._db.execute("DELETE FROM objects WHERE id = ?", (entry.id,))
                _unlink(part)
                raise StoreError(f"Cannot store {draft.key!r}: {exc.strerror}.") from None
            ready = self._db.execute(
                "UPDATE objects SET state = 'ready' WHERE id = ?", (entry.id,)
            ).rowcount
            if not ready:
                # A purge removed the pending row while the file was being renamed.
                _unlink(final)
                raise Purged(f"{draft.key!r} was purged while it was being published.")
            self._remember(entry)
            return entry

    def _make_room(self, size: int, *, protect: str) -> list[str]:
        """Delete index rows until `size` more bytes fit; returns their files to unlink.

        Runs inside the caller's write transaction, so two workers never both count the
        same free bytes.
        """
        self.sync()
        used = self._db.execute("SELECT bytes FROM totals").fetchone()[0]
        need = used + size - self.capacity
        files: list[str] = []
        if need <= 0:
            return files
        for key in self.policy.victims(need + 0):
            if key == protect:
                continue
            row = self._db.execute(
                "SELECT file, size FROM objects WHERE key = ?", (key,)
            ).fetchone()
            self._entries.pop(key, None)
            self.policy.on_remove(key)
            if row is None:
                continue  # another worker removed it already
            self._db.execute("DELETE FROM objects WHERE key = ?", (key,))
            files.append(row[0])
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict()
            need -= row[1]
            if need <= 0:
                return files
        # The policy's view may have been short of others' objects; retry from the index.
        for key, file, osize in self._db.execute(
            "SELECT key, file, size FROM objects WHERE key != ? AND state = 'ready' "
            "ORDER BY pinned, last_access",
            (protect,),
        ).fetchall():
            self._db.execute("DELETE FROM objects WHERE key = ?", (key,))
            self.forget(key)
            files.append(file)
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict()
            need -= osize
            if need <= 0:
                return files
        raise DiskFull(f"No room for {size} more bytes in a cache of {self.capacity} bytes.")

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
    ) -> Entry:
        """Store a local file as the object (title, path), verified against size and sha256.

        For the appliance's manifest fills: the bytes came from a peer or the origin by
        another route, and the title manifest says what they must be.
        """
        key = object_key(title, path)
        tmp = self.tmp_dir / f"{key_hash(key)}.{os.getpid()}.{secrets.token_hex(4)}.import"
        try:
            shutil.copyfile(src, tmp)
        except OSError as exc:
            _unlink(tmp)
            raise StoreError(f"Cannot import '{src}': {exc.strerror}.") from None
        now = time.time()
        draft = Entry(
            key=key,
            title=title,
            path=path,
            size=size,
            content_type=content_type,
            sha256=sha256.lower() if sha256 else None,
            etag=f'"{sha256[:32]}"' if sha256 else f'"{size:x}-{int(now):x}"',
            last_modified=float(int(now)),
            cache_control=cache_control,
            response_time=now,
            lifetime=float("inf"),
            pinned=pinned,
        )
        return self.publish(draft, tmp)

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

    def remove(self, key: str, *, invalidate: bool = True) -> bool:
        """Remove `key` on purpose. An invalidation (RFC 9111 §4.4) also dooms the fills of
        its URL under way in any worker; a plain answer superseding a variant
        (`invalidate=False`) does not."""
        return self._delete("key = ?", (key,), always=False, invalidate=invalidate) > 0

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
        return _mark(self._reader, key)

    def purge(self, *, title: str | None = None, prefix: str | None = None) -> int:
        """Remove every object of `title`, or every object whose key starts with `prefix`."""
        if title is None and prefix is None:
            raise ValueError("purge needs a title or a prefix")
        if title is not None:
            return self._delete("title = ?", (title,))
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # type: ignore[union-attr]
        return self._delete("key LIKE ? ESCAPE '\\'", (escaped + "%",))

    def _delete(
        self, where: str, args: tuple[str, ...], *, always: bool = True, invalidate: bool = True
    ) -> int:
        """Remove on purpose (a purge, an invalidation): under the write lock, so a fill
        publishing now waits and then sees the new generation (`edge.generation`). A
        purge (`always`) bumps it, and the purge counter, even when nothing is stored yet
        (a fill may be under way); a single-key removal bumps only the first, and only
        when it removed something, and an invalidation records the URL in `removals`."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT key, file FROM objects WHERE {where}", args
                ).fetchall()
                self._db.execute(f"DELETE FROM objects WHERE {where}", args)
                if rows and invalidate and not always:
                    now = time.time()
                    self._db.execute("DELETE FROM removals WHERE at < ?", (now - REMOVALS_KEPT,))
                    self._db.executemany(
                        "INSERT OR REPLACE INTO removals (key, at) VALUES (?, ?)",
                        [(k, now) for k in {primary_of(key) for key, _ in rows}],
                    )
                if rows or always:
                    self.generation.bump(purge=always)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            for key, file in rows:
                self.forget(key)
                _unlink(self.objects_dir / file[:2] / file)
            if rows:
                # Again once the files are gone: a worker that re-read a row between the
                # first bump and the commit drops what it took from it.
                self.generation.bump()
            return len(rows)

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

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self.flush_access()
            self._db.close()
            self._reader.close()
            self.generation.close()


class Purged(StoreError):
    """A fill finished after a purge of its object: not stored."""


def _mark(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT id FROM removals WHERE key = ?", (primary_of(key),)).fetchone()
    return int(row[0]) if row is not None else 0


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
