"""The SQLite store: the embedded default.

One connection lives on one dedicated thread; every method runs one short synchronous
function there (`loop.run_in_executor`), so the event loop never waits on disk and each
operation is a single hop. WAL mode lets readers of the file (backups, `sqlite3` by hand)
proceed while we write; `synchronous=NORMAL` is durable across application crashes and
costs no fsync per heartbeat (SQLite docs, "WAL mode": only a power loss may lose the
last transactions, which the next heartbeat replaces anyway).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from origin.control.auth import Principal, check_role
from origin.control.migrations import MIGRATIONS_TABLE, pending
from origin.control.popularity import LN2, Score
from origin.control.store import (
    APPLIANCE_COLUMNS,
    ENROLLMENT_COLUMNS,
    ApplianceRecord,
    Beat,
    ContentKey,
    EnrollmentRecord,
    HeartbeatRecord,
    TitleSummary,
    TokenInfo,
    appliance_from_row,
    appliance_updates,
    enrollment_from_row,
    manifest_from_trusted,
    manifest_json,
    popularity_deltas,
)
from origin.control.store_plans import SqlitePlans
from vcdn.errors import StoreError
from vcdn.schemas import Registration, TitleManifest

T = TypeVar("T")
BUSY_TIMEOUT_MS: Final = 5000

_APPLIANCE_COLUMNS: Final = APPLIANCE_COLUMNS
_ENROLLMENT_COLUMNS: Final = ENROLLMENT_COLUMNS
# Only titles of the catalog get a row: a heartbeat cannot grow the table with made-up ids.
_UPSERT_SCORE: Final = f"""
INSERT INTO popularity (title, site, score, updated_at)
SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM titles WHERE id = ?1)
ON CONFLICT (title, site) DO UPDATE SET
    score = popularity.score
        * exp(-{LN2!r} * max(0.0, excluded.updated_at - popularity.updated_at) / ?5)
        + excluded.score,
    updated_at = max(popularity.updated_at, excluded.updated_at)
"""
# Keep the newest `?2` history rows of appliance `?1` (by the (appliance_id, at) index).
_TRIM_HISTORY: Final = """
DELETE FROM heartbeats WHERE appliance_id = ?1 AND at < (
    SELECT at FROM heartbeats WHERE appliance_id = ?1 ORDER BY at DESC LIMIT 1 OFFSET ?2 - 1
)
"""


class SqliteStore(SqlitePlans):
    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vcdn-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        store = cls(path)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"The SQLite store '{self._path}' is closed.")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite database '{self._path}' failed: {exc}.") from exc

    # --- on the store thread ---

    def _connect(self) -> None:
        if self._path != ":memory:":
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"Cannot create the directory of SQLite database '{self._path}': "
                    f"{exc.strerror}."
                ) from None
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(MIGRATIONS_TABLE.format(real="REAL"))
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for m in pending(applied):
            script = (
                f"BEGIN IMMEDIATE;\n{m.sqlite}\n"
                f"INSERT INTO schema_migrations VALUES ({m.version}, "
                f"'{m.description.replace(chr(39), chr(39) * 2)}', {time.time()!r});\nCOMMIT;"
            )
            try:
                conn.executescript(script)
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("The SQLite store is closed.")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- the Store interface ---

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._run(self._close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)

    async def schema_version(self) -> int:
        def q() -> int:
            (v,) = (
                self._db()
                .execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                .fetchone()
            )
            return int(v)

        return await self._run(q)

    async def put_title(self, manifest: TitleManifest, now: float) -> bool:
        body = manifest_json(manifest)

        def tx(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT registered_at FROM titles WHERE id = ?", (manifest.title,)
            ).fetchone()
            registered = now if row is None else row[0]
            conn.execute(
                "INSERT OR REPLACE INTO titles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    manifest.title,
                    body,
                    manifest.duration,
                    manifest.format,
                    int(manifest.live),
                    manifest.version,
                    len(manifest.renditions),
                    len(manifest.files),
                    manifest.total_bytes,
                    registered,
                    now,
                ),
            )
            return row is None

        return await self._run(self._write, tx)

    async def get_title(self, title: str) -> str | None:
        def q() -> str | None:
            row = (
                self._db().execute("SELECT manifest FROM titles WHERE id = ?", (title,)).fetchone()
            )
            return None if row is None else str(row[0])

        return await self._run(q)

    async def list_titles(self) -> list[TitleSummary]:
        def q() -> list[TitleSummary]:
            rows = (
                self._db()
                .execute(
                    "SELECT id, duration, format, live, version, renditions, files, total_bytes, "
                    "registered_at, updated_at FROM titles ORDER BY id"
                )
                .fetchall()
            )
            return [
                TitleSummary(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
                for r in rows
            ]

        return await self._run(q)

    async def catalog(self) -> list[TitleManifest]:
        def q() -> list[str]:
            return [r[0] for r in self._db().execute("SELECT manifest FROM titles ORDER BY id")]

        return [manifest_from_trusted(text) for text in await self._run(q)]

    async def catalog_stamp(self) -> tuple[int, float]:
        def q() -> tuple[int, float]:
            n, last = (
                self._db()
                .execute("SELECT count(*), coalesce(max(updated_at), 0) FROM titles")
                .fetchone()
            )
            return int(n), float(last)

        return await self._run(q)

    async def put_appliance(
        self, registration: Registration, now: float
    ) -> tuple[ApplianceRecord, bool]:
        r = registration

        def tx(conn: sqlite3.Connection) -> tuple[ApplianceRecord, bool]:
            cur = conn.execute(
                "UPDATE appliances SET site = ?, public_url = ?, tls_url = ?, capacity_bytes = ?, "
                "asn = ?, lat = ?, lon = ?, prefixes = ?, updated_at = ? WHERE id = ?",
                (
                    r.site,
                    r.public_url,
                    r.tls_url,
                    r.capacity_bytes,
                    r.asn,
                    r.lat,
                    r.lon,
                    json.dumps(r.prefixes),
                    now,
                    r.id,
                ),
            )
            created = cur.rowcount == 0
            if created:
                conn.execute(
                    "INSERT INTO appliances (id, site, public_url, tls_url, capacity_bytes, asn, "
                    "lat, lon, prefixes, registered_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.id,
                        r.site,
                        r.public_url,
                        r.tls_url,
                        r.capacity_bytes,
                        r.asn,
                        r.lat,
                        r.lon,
                        json.dumps(r.prefixes),
                        now,
                        now,
                    ),
                )
            row = conn.execute(
                f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE id = ?", (r.id,)
            ).fetchone()
            return appliance_from_row(row), created

        return await self._run(self._write, tx)

    async def get_appliance(self, appliance: str) -> ApplianceRecord | None:
        def q() -> ApplianceRecord | None:
            row = (
                self._db()
                .execute(f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE id = ?", (appliance,))
                .fetchone()
            )
            return None if row is None else appliance_from_row(row)

        return await self._run(q)

    async def delete_appliance(self, appliance: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM heartbeats WHERE appliance_id = ?", (appliance,))
            return conn.execute("DELETE FROM appliances WHERE id = ?", (appliance,)).rowcount > 0

        return await self._run(self._write, tx)

    async def list_appliances(
        self, after: str | None = None, limit: int | None = None
    ) -> list[ApplianceRecord]:
        def q() -> list[ApplianceRecord]:
            rows = self._db().execute(
                f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE id > ? ORDER BY id "
                "LIMIT ?",
                (after or "", -1 if limit is None else limit),  # LIMIT -1: no limit
            )
            return [appliance_from_row(r) for r in rows]

        return await self._run(q)

    async def site_appliances(self, site: str) -> list[ApplianceRecord]:
        def q() -> list[ApplianceRecord]:
            rows = self._db().execute(
                f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE site = ? ORDER BY id",
                (site,),
            )
            return [appliance_from_row(r) for r in rows]

        return await self._run(q)

    async def record_heartbeats(
        self, beats: Sequence[Beat], half_life: float, *, keep_rows: int | None = None
    ) -> int:
        if not beats:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            ids = sorted({b.appliance for b in beats})
            marks = ",".join("?" * len(ids))
            sites = dict(
                conn.execute(f"SELECT id, site FROM appliances WHERE id IN ({marks})", ids)
            )
            known = [b for b in beats if b.appliance in sites]
            conn.executemany(
                "UPDATE appliances SET last_heartbeat = ?, reported_state = ?, requests_per_s = ?, "
                "bytes_per_s = ?, connections = ?, free_bytes = ?, used_bytes = ?, "
                "bytes_served = ?, hit_ratio = ? WHERE id = ?",
                appliance_updates(known),
            )
            kept = [(b.appliance, b.at, b.body) for b in known if b.body is not None]
            conn.executemany("INSERT INTO heartbeats VALUES (?, ?, ?)", kept)
            if keep_rows is not None and kept:
                ids = sorted({k[0] for k in kept})
                conn.executemany(_TRIM_HISTORY, [(a, keep_rows) for a in ids])
            conn.executemany(
                _UPSERT_SCORE,
                [(*row, half_life) for row in popularity_deltas(known, sites, half_life)],
            )
            return len(known)

        return await self._run(self._write, tx)

    async def heartbeats(self, appliance: str, since: float, limit: int) -> list[HeartbeatRecord]:
        def q() -> list[tuple[float, str]]:
            return (
                self._db()
                .execute(
                    "SELECT at, body FROM heartbeats WHERE appliance_id = ? AND at >= ? "
                    "ORDER BY at LIMIT ?",
                    (appliance, since, limit),
                )
                .fetchall()
            )

        return [HeartbeatRecord(at, json.loads(body)) for at, body in await self._run(q)]

    async def prune_heartbeats(self, before: float) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM heartbeats WHERE at < ?", (before,)).rowcount

        return await self._run(self._write, tx)

    async def scores(self, site: str | None = None) -> list[Score]:
        def q() -> list[Score]:
            db = self._db()
            if site is None:
                rows = db.execute("SELECT title, site, score, updated_at FROM popularity")
            else:
                rows = db.execute(
                    "SELECT title, site, score, updated_at FROM popularity WHERE site = ?", (site,)
                )
            return [Score(*r) for r in rows]

        return await self._run(q)

    async def title_totals(
        self, now: float, half_life: float, title: str | None = None
    ) -> dict[str, float]:
        sql = (
            f"SELECT title, sum(score * exp(-{LN2!r} * max(0.0, ? - updated_at) / ?)) "
            "FROM popularity"
        )

        def q() -> dict[str, float]:
            db = self._db()
            if title is None:
                rows = db.execute(sql + " GROUP BY title", (now, half_life))
            else:
                rows = db.execute(sql + " WHERE title = ? GROUP BY title", (now, half_life, title))
            return {t: float(v) for t, v in rows}

        return await self._run(q)

    async def add_token(
        self, token_hash: str, principal: Principal, label: str, now: float
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?)",
                (token_hash, principal.role, principal.subject, label, now),
            )

        await self._run(self._write, tx)

    async def list_tokens(self) -> list[TokenInfo]:
        def q() -> list[TokenInfo]:
            rows = self._db().execute(
                "SELECT hash, role, subject, label, created_at FROM tokens "
                "ORDER BY created_at, hash"
            )
            return [TokenInfo(*r) for r in rows]

        return await self._run(q)

    async def delete_token(self, token_hash: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,)).rowcount > 0

        return await self._run(self._write, tx)

    async def revoke_subject(self, subject: str) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM tokens WHERE role = 'appliance' AND subject = ?", (subject,)
            ).rowcount

        return await self._run(self._write, tx)

    async def put_key(self, key: ContentKey, now: float) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE title_keys SET scheme = ?, key = ? WHERE title = ? AND kid = ?",
                (key.scheme, key.key, key.title, key.kid),
            )
            if cur.rowcount:
                return False
            conn.execute(
                "INSERT INTO title_keys VALUES (?, ?, ?, ?, ?)",
                (key.title, key.kid, key.scheme, key.key, now),
            )
            return True

        return await self._run(self._write, tx)

    async def get_key(self, title: str, kid: str) -> ContentKey | None:
        def q() -> ContentKey | None:
            row = self._db().execute(
                "SELECT scheme, key FROM title_keys WHERE title = ? AND kid = ?", (title, kid)
            ).fetchone()
            return None if row is None else ContentKey(title, kid, row[0], row[1])

        return await self._run(q)

    async def put_enrollment(self, enrollment: EnrollmentRecord) -> bool:
        e = enrollment

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE enrollments SET site = ?, prefixes = ?, label = ?, updated_at = ? "
                "WHERE id = ?",
                (e.site, json.dumps(e.prefixes), e.label, e.updated_at, e.id),
            )
            if cur.rowcount:
                return False
            conn.execute(
                "INSERT INTO enrollments VALUES (?, ?, ?, ?, ?, ?)",
                (e.id, e.site, json.dumps(e.prefixes), e.label, e.created_at, e.updated_at),
            )
            return True

        return await self._run(self._write, tx)

    async def get_enrollment(self, appliance: str) -> EnrollmentRecord | None:
        def q() -> EnrollmentRecord | None:
            sql = f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?"
            row = self._db().execute(sql, (appliance,)).fetchone()
            return None if row is None else enrollment_from_row(row)

        return await self._run(q)

    async def list_enrollments(self) -> list[EnrollmentRecord]:
        def q() -> list[EnrollmentRecord]:
            rows = self._db().execute(f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments ORDER BY id")
            return [enrollment_from_row(r) for r in rows]

        return await self._run(q)

    async def principal(self, token_hash: str) -> Principal | None:
        def q() -> Principal | None:
            row = (
                self._db()
                .execute("SELECT role, subject FROM tokens WHERE hash = ?", (token_hash,))
                .fetchone()
            )
            return None if row is None else Principal(check_role(row[0]), row[1])

        return await self._run(q)

    async def token_epoch(self) -> int:
        def q() -> int:
            (epoch,) = self._db().execute("SELECT epoch FROM token_epoch").fetchone()
            return int(epoch)

        return await self._run(q)
