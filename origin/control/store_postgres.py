"""The PostgreSQL store, through asyncpg: for deployments that outgrow one machine.

Several control servers may share one database: migrations run under an advisory lock,
every write is one statement or one transaction, and a heartbeat is a single statement
(data-modifying CTEs) so that it costs one round trip however many titles it reports.
Extra query parameters of the URL become server settings (``?search_path=myschema``),
which is how the tests give each run a schema of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

import asyncpg
import orjson

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
    redact,
)
from origin.control.store_plans import PostgresPlans
from vcdn.errors import StoreError
from vcdn.schemas import Registration, TitleManifest

MIGRATION_LOCK: Final = 0x76636E64  # "vcdn": one advisory lock id for schema changes
POOL_MAX: Final = 8
CONNECT_TIMEOUT: Final = 10.0

_APPLIANCE_COLUMNS: Final = APPLIANCE_COLUMNS

_UPDATE_APPLIANCE: Final = """
UPDATE appliances SET last_heartbeat = $1, reported_state = $2, requests_per_s = $3,
    bytes_per_s = $4, connections = $5, free_bytes = $6, used_bytes = $7,
    bytes_served = $8, hit_ratio = $9
WHERE id = $10
"""
_INSERT_HISTORY: Final = """
INSERT INTO heartbeats (appliance_id, at, body)
SELECT * FROM unnest($1::text[], $2::float8[], $3::text[])
"""
# Rows arrive sorted by (title, site), so concurrent batches lock them in the same order.
# Only titles of the catalog get a row: a heartbeat cannot grow the table with made-up ids.
# The rows come as one JSON text (built off the event loop), so that a 10,000-title beat
# costs the loop one string parameter rather than encoding four 10,000-element arrays.
_UPSERT_SCORES: Final = f"""
INSERT INTO popularity AS p (title, site, score, updated_at)
SELECT u.t, u.s, u.v, u.a
FROM json_to_recordset($1::json) AS u(t text, s text, v float8, a float8)
WHERE EXISTS (SELECT 1 FROM titles WHERE titles.id = u.t)
ORDER BY u.t, u.s
ON CONFLICT (title, site) DO UPDATE SET
    score = p.score * exp(-{LN2!r} * greatest(0.0, excluded.updated_at - p.updated_at) / $2)
        + excluded.score,
    updated_at = greatest(p.updated_at, excluded.updated_at)
"""


# Keep the newest $2 history rows of each appliance in $1 (by the (appliance_id, at) index).
_TRIM_HISTORY: Final = """
DELETE FROM heartbeats h USING unnest($1::text[]) AS a(id)
WHERE h.appliance_id = a.id AND h.at < (
    SELECT at FROM heartbeats WHERE appliance_id = a.id ORDER BY at DESC OFFSET $2 - 1 LIMIT 1
)
"""


OFF_LOOP_TITLES: Final = 1000


def deltas_json(beats: Sequence[Beat], sites: dict[str, str], half_life: float) -> str | None:
    """`popularity_deltas` as the JSON rows `_UPSERT_SCORES` reads; None if there are none."""
    rows = popularity_deltas(beats, sites, half_life)
    if not rows:
        return None
    return orjson.dumps([{"t": t, "s": s, "v": v, "a": a} for t, s, v, a in rows]).decode()


async def deltas_off_loop(
    beats: Sequence[Beat], sites: dict[str, str], half_life: float
) -> str | None:
    """`deltas_json`, in a worker thread when the batch is big: ~1 µs a title is 10 ms of
    a 10,000-title beat, too long to hold the event loop."""
    if sum(len(b.heartbeat.title_requests) for b in beats) <= OFF_LOOP_TITLES:
        return deltas_json(beats, sites, half_life)
    return await asyncio.to_thread(deltas_json, beats, sites, half_life)


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release beyond asyncpg's own rollback of an open
    transaction: nothing. The default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL) is one more round trip on every release, as much as the query it follows, and
    this store leaves no session state behind: no SET, LISTEN, cursor outside a
    transaction or session-level advisory lock (the jobs lease has a connection of its
    own; migrations take a transaction-level lock)."""
    return None


def appliance_from_record(r: asyncpg.Record) -> ApplianceRecord:
    return appliance_from_row(tuple(r))


class PostgresStore(PostgresPlans):
    kind = "postgres"

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._url = redact(url)
        self._dsn = url  # the jobs lease opens a session of its own
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                command_timeout=30,
                reset=keep_session,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreError(f"Cannot connect to PostgreSQL at {redact(url)}: {exc}.") from None
        except ValueError as exc:  # asyncpg's DSN parser
            raise StoreError(f"PostgreSQL URL {redact(url)} is malformed: {exc}.") from None
        store = cls(url, pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; driver errors leave here as StoreError."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL at {self._url} failed: {exc}.") from exc

    async def _migrate(self) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(MIGRATIONS_TABLE.format(real="DOUBLE PRECISION"))
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            for m in pending(applied):
                await conn.execute(m.postgres)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                    m.version,
                    m.description,
                    time.time(),
                )

    async def close(self) -> None:
        await self._pool.close()

    async def schema_version(self) -> int:
        async with self._conn() as conn:
            return int(
                await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            )

    async def put_title(self, manifest: TitleManifest, now: float) -> bool:
        m = manifest
        async with self._conn() as conn:
            # xmax = 0 only for a freshly inserted row: tells insert from update in one trip.
            inserted = await conn.fetchval(
                "INSERT INTO titles VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) "
                "ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest, "
                "duration = excluded.duration, format = excluded.format, live = excluded.live, "
                "version = excluded.version, renditions = excluded.renditions, "
                "files = excluded.files, total_bytes = excluded.total_bytes, "
                "updated_at = excluded.updated_at RETURNING (xmax = 0)",
                m.title,
                manifest_json(m),
                m.duration,
                m.format,
                m.live,
                m.version,
                len(m.renditions),
                len(m.files),
                m.total_bytes,
                now,
            )
        return bool(inserted)

    async def get_title(self, title: str) -> str | None:
        async with self._conn() as conn:
            value = await conn.fetchval("SELECT manifest FROM titles WHERE id = $1", title)
        return None if value is None else str(value)

    async def list_titles(self) -> list[TitleSummary]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT id, duration, format, live, version, renditions, files, total_bytes, "
                "registered_at, updated_at FROM titles ORDER BY id"
            )
        return [TitleSummary(*r) for r in rows]

    async def catalog(self) -> list[TitleManifest]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT manifest FROM titles ORDER BY id")
        return [manifest_from_trusted(r[0]) for r in rows]

    async def catalog_stamp(self) -> tuple[int, float]:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT count(*), coalesce(max(updated_at), 0) FROM titles")
        return int(row[0]), float(row[1])

    async def put_appliance(
        self, registration: Registration, now: float
    ) -> tuple[ApplianceRecord, bool]:
        r = registration
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "INSERT INTO appliances (id, site, public_url, capacity_bytes, asn, lat, lon, "
                "prefixes, registered_at, updated_at, tls_url) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) "
                "ON CONFLICT (id) DO UPDATE SET site = excluded.site, "
                "public_url = excluded.public_url, capacity_bytes = excluded.capacity_bytes, "
                "tls_url = excluded.tls_url, "
                "asn = excluded.asn, lat = excluded.lat, lon = excluded.lon, "
                "prefixes = excluded.prefixes, updated_at = excluded.updated_at "
                f"RETURNING {_APPLIANCE_COLUMNS}, (xmax = 0) AS created",
                r.id,
                r.site,
                r.public_url,
                r.capacity_bytes,
                r.asn,
                r.lat,
                r.lon,
                json.dumps(r.prefixes),
                now,
                r.tls_url,
            )
        return appliance_from_record(row), bool(row["created"])

    async def get_appliance(self, appliance: str) -> ApplianceRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE id = $1", appliance
            )
        return None if row is None else appliance_from_record(row)

    async def delete_appliance(self, appliance: str) -> bool:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("DELETE FROM heartbeats WHERE appliance_id = $1", appliance)
            status = await conn.execute("DELETE FROM appliances WHERE id = $1", appliance)
        return status != "DELETE 0"

    async def list_appliances(
        self, after: str | None = None, limit: int | None = None
    ) -> list[ApplianceRecord]:
        async with self._conn() as conn:
            if after is None and limit is None:
                rows = await conn.fetch(
                    f"SELECT {_APPLIANCE_COLUMNS} FROM appliances ORDER BY id"
                )
            else:  # LIMIT NULL is no limit
                rows = await conn.fetch(
                    f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE id > $1 "
                    "ORDER BY id LIMIT $2",
                    after or "",
                    limit,
                )
        return [appliance_from_record(r) for r in rows]

    async def site_appliances(self, site: str) -> list[ApplianceRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_APPLIANCE_COLUMNS} FROM appliances WHERE site = $1 ORDER BY id", site
            )
        return [appliance_from_record(r) for r in rows]

    async def record_heartbeats(
        self, beats: Sequence[Beat], half_life: float, *, keep_rows: int | None = None
    ) -> int:
        if not beats:
            return 0
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, site FROM appliances WHERE id = any($1::text[])",
                sorted({b.appliance for b in beats}),
            )
            sites = {r["id"]: r["site"] for r in rows}
            known = [b for b in beats if b.appliance in sites]
            if not known:
                return 0
            # Appliance rows first, in id order; then history; then popularity in key order.
            await conn.executemany(_UPDATE_APPLIANCE, appliance_updates(known))
            kept = [b for b in known if b.body is not None]
            if kept:
                await conn.execute(
                    _INSERT_HISTORY,
                    [b.appliance for b in kept],
                    [b.at for b in kept],
                    [b.body for b in kept],
                )
                if keep_rows is not None:
                    await conn.execute(
                        _TRIM_HISTORY, sorted({b.appliance for b in kept}), keep_rows
                    )
            deltas = await deltas_off_loop(known, sites, half_life)
            if deltas is not None:
                await conn.execute(_UPSERT_SCORES, deltas, half_life)
        return len(known)

    async def heartbeats(self, appliance: str, since: float, limit: int) -> list[HeartbeatRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT at, body FROM heartbeats WHERE appliance_id = $1 AND at >= $2 "
                "ORDER BY at LIMIT $3",
                appliance,
                since,
                limit,
            )
        return [HeartbeatRecord(r["at"], json.loads(r["body"])) for r in rows]

    async def prune_heartbeats(self, before: float) -> int:
        async with self._conn() as conn:
            status = await conn.execute("DELETE FROM heartbeats WHERE at < $1", before)
        return int(status.rsplit(" ", 1)[-1])

    async def scores(self, site: str | None = None) -> list[Score]:
        async with self._conn() as conn:
            if site is None:
                rows = await conn.fetch("SELECT title, site, score, updated_at FROM popularity")
            else:
                rows = await conn.fetch(
                    "SELECT title, site, score, updated_at FROM popularity WHERE site = $1", site
                )
        return [Score(*r) for r in rows]

    async def title_totals(
        self, now: float, half_life: float, title: str | None = None
    ) -> dict[str, float]:
        sql = (
            f"SELECT title, sum(score * exp(-{LN2!r} * greatest(0.0, $1 - updated_at) / $2)) "
            "FROM popularity"
        )
        async with self._conn() as conn:
            if title is None:
                rows = await conn.fetch(sql + " GROUP BY title", now, half_life)
            else:
                rows = await conn.fetch(
                    sql + " WHERE title = $3 GROUP BY title", now, half_life, title
                )
        return {r[0]: float(r[1]) for r in rows}

    async def add_token(
        self, token_hash: str, principal: Principal, label: str, now: float
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO tokens VALUES ($1, $2, $3, $4, $5)",
                token_hash,
                principal.role,
                principal.subject,
                label,
                now,
            )

    async def list_tokens(self) -> list[TokenInfo]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT hash, role, subject, label, created_at FROM tokens "
                "ORDER BY created_at, hash"
            )
        return [TokenInfo(*r) for r in rows]

    async def delete_token(self, token_hash: str) -> bool:
        async with self._conn() as conn:
            status = await conn.execute("DELETE FROM tokens WHERE hash = $1", token_hash)
        return status != "DELETE 0"

    async def revoke_subject(self, subject: str) -> int:
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM tokens WHERE role = 'appliance' AND subject = $1", subject
            )
        return int(status.rsplit(" ", 1)[-1])

    async def put_key(self, key: ContentKey, now: float) -> bool:
        async with self._conn() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO title_keys VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (title, kid) DO UPDATE SET scheme = excluded.scheme, "
                "key = excluded.key RETURNING (xmax = 0)",
                key.title, key.kid, key.scheme, key.key, now,
            )
        return bool(inserted)

    async def get_key(self, title: str, kid: str) -> ContentKey | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT scheme, key FROM title_keys WHERE title = $1 AND kid = $2", title, kid
            )
        return None if row is None else ContentKey(title, kid, row[0], row[1])

    async def put_enrollment(self, enrollment: EnrollmentRecord) -> bool:
        e = enrollment
        async with self._conn() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO enrollments VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (id) DO UPDATE SET site = excluded.site, "
                "prefixes = excluded.prefixes, label = excluded.label, "
                "updated_at = excluded.updated_at RETURNING (xmax = 0)",
                e.id, e.site, json.dumps(e.prefixes), e.label, e.created_at, e.updated_at,
            )
        return bool(inserted)

    async def get_enrollment(self, appliance: str) -> EnrollmentRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = $1", appliance
            )
        return None if row is None else enrollment_from_row(tuple(row))

    async def list_enrollments(self) -> list[EnrollmentRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments ORDER BY id")
        return [enrollment_from_row(tuple(r)) for r in rows]

    async def principal(self, token_hash: str) -> Principal | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT role, subject FROM tokens WHERE hash = $1", token_hash
            )
        return None if row is None else Principal(check_role(row["role"]), row["subject"])

    async def token_epoch(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT epoch FROM token_epoch"))
