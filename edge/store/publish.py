"""Publishing a filled or imported object (see `edge.store` for the crash-safety steps),
and making room for it within the byte budget."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

from edge.store.entry import Entry, Purged, object_key
from edge.store.index import removal_id
from edge.store.layout import fsync_dir, key_hash, unlink
from edge.store.state import StoreState
from vcdn.checksums import sha256_file
from vcdn.errors import DiskFull, IntegrityError, StoreError


class Publishing(StoreState):
    """`publish`, `import_file` and eviction to make room."""

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
            unlink(part)
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
                if mark is not None and removal_id(self._db, draft.key) != mark:
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
                unlink(part)
                raise
            entry = replace(entry, id=int(cur.lastrowid or 0))
            for file in stale_files:
                unlink(self.objects_dir / file[:2] / file)
            try:
                final.parent.mkdir(exist_ok=True)
                os.rename(part, final)
                fsync_dir(final.parent)
            except OSError as exc:
                self._db.execute("DELETE FROM objects WHERE id = ?", (entry.id,))
                unlink(part)
                raise StoreError(f"Cannot store {draft.key!r}: {exc.strerror}.") from None
            ready = self._db.execute(
                "UPDATE objects SET state = 'ready' WHERE id = ?", (entry.id,)
            ).rowcount
            if not ready:
                # A purge removed the pending row while the file was being renamed.
                unlink(final)
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
            unlink(tmp)
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
