"""Making index and disk agree after any crash, before any worker uses the store.

Temp files are dropped, pending rows whose file arrived whole are adopted (after a
sha256 check when the row has one), rows without files and files without rows are
dropped, so a partial object is never served. Objects stored with Set-Cookie by an older
version are dropped too.
"""

from __future__ import annotations

import os
import sqlite3
import time

from edge.store.entry import ReconcileReport
from edge.store.index import per_user
from edge.store.layout import unlink
from edge.store.state import StoreState
from vcdn.checksums import sha256_file


class Reconciling(StoreState):
    """`reconcile`."""

    def reconcile(self, *, load: bool = True) -> ReconcileReport:
        """Make index and disk agree after any crash. Only while no worker uses the store.

        With `load`, this store's eviction order is read afterwards (`load`).
        """
        start = time.monotonic()
        temp_removed = adopted = rows_dropped = files_dropped = 0
        with self._lock:
            for p in self.tmp_dir.iterdir():
                unlink(p)
                temp_removed += 1
            on_disk: dict[str, int] = {}
            for sub in self.objects_dir.iterdir():
                if not sub.is_dir():
                    unlink(sub)
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
                if have != size or per_user(headers):
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
                unlink(self.objects_dir / name[:2] / name)
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
