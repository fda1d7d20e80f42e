"""Removing objects on purpose: purges, invalidations, superseded variants.

Under the write lock, so a fill publishing at the same time waits and then sees the new
generation (`edge.generation`) or the URL's new invalidation mark, and does not bring the
removed bytes back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import Final

from edge.store.layout import unlink
from edge.store.state import StoreState
from edge.vary import primary_of

#: How long an invalidation is remembered for the fills of its URL under way (seconds):
#: a fill that lasts longer and spans an invalidation may still be published.
REMOVALS_KEPT: Final = 86_400.0


class Removals(StoreState):
    """`remove`, `remove_variants`, `purge`."""

    def remove(self, key: str, *, invalidate: bool = True) -> bool:
        """Remove `key` on purpose. An invalidation (RFC 9111 §4.4) also dooms the fills of
        its URL under way in any worker; a plain answer superseding a variant
        (`invalidate=False`) does not."""
        return self._delete("key = ?", (key,), always=False, invalidate=invalidate) > 0

    def remove_variants(self, primary: str, *, invalidate: bool = True) -> int:
        """Remove every Vary variant of `primary` (an unsafe method, or a plain answer
        with `invalidate=False`, replaced them)."""
        return self._delete(
            "key > ? AND key < ?", (primary + "\n", primary + "\x0b"), always=False,
            invalidate=invalidate,
        )

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
                unlink(self.objects_dir / file[:2] / file)
            if rows:
                # Again once the files are gone: a worker that re-read a row between the
                # first bump and the commit drops what it took from it.
                self.generation.bump()
            return len(rows)
