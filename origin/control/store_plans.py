"""The fill plan in the database, for both stores: what lets control replicas agree.

Every replica answers an appliance's fill-manifest request from `fill_plans`: the stored
manifest when it belongs to the current plan epoch and was made from the same inputs,
otherwise a new plan offered with compare-and-set (`offer_plan`: the first replica to
store a plan for an epoch and inputs wins, the others return the winner's). The planning
job advances the epoch and replans every site in one transaction (`advance_plans`), only
if the epoch is still the one it planned from, so two job holders can never interleave.

The leases: one instance at a time runs the periodic jobs. On PostgreSQL that is a
session-level advisory lock on a connection of its own, keyed by the database and schema
(two deployments, or two test runs, on one server never share a key); when the holder
dies its session ends, the lock is free and the next instance to try takes it. SQLite is
the one-box store: its only instance always holds the lease.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import asyncpg

from origin.control.popularity import LN2

T = TypeVar("T")
LEASE_CONNECT_TIMEOUT: Final = 5.0
# InternalClientError: asyncpg's protocol state after its backend was terminated under it
# (seen when the lease session is killed mid-query); the lease is lost all the same.
_DB_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class StoredPlan:
    """An appliance's manifest (JSON text) for plan `epoch`, made from `inputs` (a digest)."""

    appliance: str
    epoch: int
    inputs: str
    generated_at: float
    manifest: str


class Lease(Protocol):
    async def hold(self) -> bool:
        """Take or keep the jobs lock; True while this instance holds it."""
        ...

    async def release(self) -> None: ...


PLAN_CHUNK: Final = 500  # stored plans per INSERT of a planning run


def lock_key(database: str, schema: str) -> int:
    """A signed 64-bit advisory-lock key for the jobs of one database and schema."""
    digest = hashlib.blake2b(f"vcdn control jobs {database} {schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class LocalLease:
    """SQLite: one instance, always the holder."""

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class PostgresLease:
    """`pg_try_advisory_lock` on a dedicated session; lost if that session is."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._held = False
        self.key: int | None = None

    async def hold(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._held = False
                self._conn = await asyncpg.connect(self._dsn, timeout=LEASE_CONNECT_TIMEOUT)
                row = await self._conn.fetchrow("SELECT current_database(), current_schema()")
                self.key = lock_key(str(row[0]), str(row[1]))
            if self._held:
                # A session-level lock lasts as long as its session: alive means still ours.
                await self._conn.fetchval("SELECT 1", timeout=LEASE_CONNECT_TIMEOUT)
                return True
            got = await self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.key, timeout=LEASE_CONNECT_TIMEOUT
            )
            self._held = bool(got)
            return self._held
        except _DB_ERRORS:
            await self.release()
            return False

    @property
    def pid(self) -> int | None:
        """The PostgreSQL backend holding (or trying for) the lock, for operators."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def release(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=LEASE_CONNECT_TIMEOUT)
            except _DB_ERRORS:
                conn.terminate()


_SELECT: Final = "SELECT appliance_id, epoch, inputs, generated_at, manifest FROM fill_plans"
# Replace a stored plan only with one of a later epoch, or of the same epoch made from
# other inputs (the site changed); an equal offer keeps the first: every replica agrees.
_OFFER_WHERE: Final = (
    "WHERE fill_plans.epoch < excluded.epoch OR "
    "(fill_plans.epoch = excluded.epoch AND fill_plans.inputs <> excluded.inputs)"
)
_SET: Final = (
    "epoch = excluded.epoch, inputs = excluded.inputs, "
    "generated_at = excluded.generated_at, manifest = excluded.manifest"
)


class SqlitePlans:
    """The plan methods of `SqliteStore` (mixed in; uses its `_run` and `_write`)."""

    _run: Callable[..., Any]
    _write: Callable[..., Any]
    _db: Callable[[], sqlite3.Connection]

    def jobs_lease(self) -> Lease:
        return LocalLease()

    async def plan_epoch(self) -> int:
        def q() -> int:
            return int(self._db().execute("SELECT epoch FROM plan_epoch").fetchone()[0])

        return int(await self._run(q))

    async def fill_plans(self, appliances: Sequence[str]) -> dict[str, StoredPlan]:
        ids = list(appliances)

        def q() -> dict[str, StoredPlan]:
            out: dict[str, StoredPlan] = {}
            conn = self._db()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for r in conn.execute(f"{_SELECT} WHERE appliance_id IN ({marks})", chunk):
                    out[r[0]] = StoredPlan(*r)
            return out

        return dict(await self._run(q))

    async def popularity_stamp(self) -> float:
        def q() -> float:
            row = self._db().execute("SELECT max(updated_at) FROM popularity").fetchone()
            return float(row[0] or 0.0)

        return float(await self._run(q))

    async def offer_plan(self, plan: StoredPlan) -> StoredPlan:
        p = plan

        def tx(conn: sqlite3.Connection) -> StoredPlan:
            conn.execute(
                "INSERT INTO fill_plans VALUES (?, ?, ?, ?, ?) "
                f"ON CONFLICT (appliance_id) DO UPDATE SET {_SET} {_OFFER_WHERE}",
                (p.appliance, p.epoch, p.inputs, p.generated_at, p.manifest),
            )
            row = conn.execute(f"{_SELECT} WHERE appliance_id = ?", (p.appliance,)).fetchone()
            return StoredPlan(*row)

        result: StoredPlan = await self._run(self._write, tx)
        return result

    async def advance_plans(self, epoch: int, plans: Sequence[StoredPlan], now: float) -> bool:
        rows = [(p.appliance, p.epoch, p.inputs, p.generated_at, p.manifest) for p in plans]

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE plan_epoch SET epoch = epoch + 1, planned_at = ? WHERE epoch = ?",
                (now, epoch),
            )
            if cur.rowcount != 1:
                return False
            conn.executemany(
                f"INSERT INTO fill_plans VALUES (?, ?, ?, ?, ?) "
                f"ON CONFLICT (appliance_id) DO UPDATE SET {_SET}",
                rows,
            )
            conn.execute(
                "DELETE FROM fill_plans WHERE appliance_id NOT IN (SELECT id FROM appliances)"
            )
            return True

        return bool(await self._run(self._write, tx))

    async def prune_scores(self, now: float, half_life: float, floor: float) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"DELETE FROM popularity WHERE score * exp(-{LN2!r} * "
                "max(0.0, ? - updated_at) / ?) < ?",
                (now, half_life, floor),
            )
            return int(cur.rowcount)

        return int(await self._run(self._write, tx))


class PostgresPlans:
    """The plan methods of `PostgresStore` (mixed in; uses its `_conn` and `_dsn`)."""

    _dsn: str
    _conn: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]

    def jobs_lease(self) -> Lease:
        return PostgresLease(self._dsn)

    async def plan_epoch(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT epoch FROM plan_epoch"))

    async def fill_plans(self, appliances: Sequence[str]) -> dict[str, StoredPlan]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"{_SELECT} WHERE appliance_id = any($1::text[])", list(appliances)
            )
        return {r[0]: StoredPlan(*r) for r in rows}

    async def popularity_stamp(self) -> float:
        async with self._conn() as conn:
            return float(await conn.fetchval("SELECT max(updated_at) FROM popularity") or 0.0)

    async def offer_plan(self, plan: StoredPlan) -> StoredPlan:
        p = plan
        async with self._conn() as conn, conn.transaction():
            # Under READ COMMITTED a concurrent offer waits on the row and then re-checks
            # the WHERE against the winner: the SELECT returns what everyone will return.
            await conn.execute(
                "INSERT INTO fill_plans VALUES ($1, $2, $3, $4, $5) "
                f"ON CONFLICT (appliance_id) DO UPDATE SET {_SET} {_OFFER_WHERE}",
                p.appliance,
                p.epoch,
                p.inputs,
                p.generated_at,
                p.manifest,
            )
            row = await conn.fetchrow(f"{_SELECT} WHERE appliance_id = $1", p.appliance)
        return StoredPlan(*row)

    async def advance_plans(self, epoch: int, plans: Sequence[StoredPlan], now: float) -> bool:
        async with self._conn() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE plan_epoch SET epoch = epoch + 1, planned_at = $1 WHERE epoch = $2",
                now,
                epoch,
            )
            if status != "UPDATE 1":
                return False
            # In chunks, one transaction: the driver encodes a statement's parameters
            # on the event loop at once, and 10,000 manifests (each listing its site's
            # peers per title) are hundreds of megabytes: a second and more of stall.
            for start in range(0, len(plans), PLAN_CHUNK):
                chunk = plans[start : start + PLAN_CHUNK]
                await conn.execute(
                    "INSERT INTO fill_plans "
                    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], "
                    "$4::float8[], $5::text[]) "
                    f"ON CONFLICT (appliance_id) DO UPDATE SET {_SET}",
                    [p.appliance for p in chunk],
                    [p.epoch for p in chunk],
                    [p.inputs for p in chunk],
                    [p.generated_at for p in chunk],
                    [p.manifest for p in chunk],
                )
            await conn.execute(
                "DELETE FROM fill_plans WHERE appliance_id NOT IN (SELECT id FROM appliances)"
            )
        return True

    async def prune_scores(self, now: float, half_life: float, floor: float) -> int:
        async with self._conn() as conn:
            status = await conn.execute(
                f"DELETE FROM popularity WHERE score * exp(-{LN2!r} * "
                "greatest(0.0, $1 - updated_at) / $2) < $3",
                now,
                half_life,
                floor,
            )
        return int(status.rsplit(" ", 1)[-1])


