"""The decision state replicas share, on both stores: stored plans, the epoch, the lease."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from origin.control.store import open_store
from origin.control.store_plans import PLAN_CHUNK, PostgresLease, StoredPlan, lock_key
from tests.origin.control.conftest import drop_schema, fresh_schema, manifest
from vcdn.schemas import Registration, TitleManifest, decode


def plan(a: str, epoch: int, inputs: str, text: str) -> StoredPlan:
    return StoredPlan(a, epoch, inputs, 1.0, text)


async def test_the_first_offer_of_an_epoch_and_inputs_wins(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        assert await store.plan_epoch() == 0
        assert (await store.offer_plan(plan("a1", 0, "x", "first"))).manifest == "first"
        # A second replica offering the same epoch and inputs gets the first's plan.
        assert (await store.offer_plan(plan("a1", 0, "x", "second"))).manifest == "first"
        # The site changed (other inputs), or a later epoch: replaced.
        assert (await store.offer_plan(plan("a1", 0, "y", "third"))).manifest == "third"
        assert (await store.offer_plan(plan("a1", 1, "y", "fourth"))).manifest == "fourth"
        # An older epoch never overwrites a newer plan.
        assert (await store.offer_plan(plan("a1", 0, "z", "old"))).manifest == "fourth"
        assert set(await store.fill_plans(["a1", "a2"])) == {"a1"}
    finally:
        await store.close()


async def test_advancing_the_epoch_is_compare_and_set(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        reg = Registration(id="a1", site="s1", public_url="http://a1:1", capacity_bytes=10)
        await store.put_appliance(reg, 1.0)
        await store.offer_plan(plan("gone", 0, "x", "of a deleted appliance"))
        assert await store.advance_plans(0, [plan("a1", 1, "x", "job")], 2.0)
        assert not await store.advance_plans(0, [plan("a1", 1, "x", "late")], 3.0)
        assert await store.plan_epoch() == 1
        stored = await store.fill_plans(["a1", "gone"])
        assert {a: p.manifest for a, p in stored.items()} == {"a1": "job"}
    finally:
        await store.close()


async def test_a_planning_run_larger_than_one_write_chunk_stores_every_plan(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        ids = [f"a{i:04d}" for i in range(PLAN_CHUNK * 2 + 7)]
        for a in ids:
            await store.put_appliance(
                Registration(id=a, site="s1", public_url=f"http://{a}:1", capacity_bytes=10), 1.0
            )
        epoch = await store.plan_epoch()
        plans = [plan(a, epoch + 1, "x", f"m-{a}") for a in ids]
        assert await store.advance_plans(epoch, plans, 2.0)
        stored = await store.fill_plans(ids)
        assert {a: (p.epoch, p.manifest) for a, p in stored.items()} == {
            a: (epoch + 1, f"m-{a}") for a in ids
        }
    finally:
        await store.close()


async def test_one_lease_holder_per_schema_and_release_hands_it_over(
    postgres_url: str,
) -> None:
    names = []
    try:
        name, url = await fresh_schema(postgres_url)
        names.append(name)
        other_name, other_url = await fresh_schema(postgres_url)
        names.append(other_name)
        first, second, elsewhere = PostgresLease(url), PostgresLease(url), PostgresLease(other_url)
        assert await first.hold()
        assert not await second.hold()
        assert await first.hold()  # kept while its session lives
        assert await elsewhere.hold()  # another schema has a key of its own
        assert first.key == lock_key("test", name) != elsewhere.key
        # The holder's session dies (as when its process is killed): the lock is free.
        conn = await asyncpg.connect(postgres_url)
        try:
            assert first.pid is not None
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", first.pid)
        finally:
            await conn.close()
        # pg_terminate_backend only signals: the lock goes when that backend has exited.
        deadline = time.monotonic() + 10
        while not await second.hold():
            assert time.monotonic() < deadline, "the lock outlived its terminated session"
            await asyncio.sleep(0.05)
        assert not await first.hold()
        for lease in (first, second, elsewhere):
            await lease.release()
    finally:
        for n in names:
            await drop_schema(postgres_url, n)


async def test_decay_forgets_scores_decayed_to_nothing(db_url: str) -> None:
    from origin.control.store import Beat
    from vcdn.schemas import Heartbeat

    store = await open_store(db_url)
    try:
        reg = Registration(id="a1", site="s1", public_url="http://a1:1", capacity_bytes=10)
        await store.put_appliance(reg, 0.0)
        for title in ("old", "hot"):  # popularity counts only titles of the catalog
            await store.put_title(decode(TitleManifest, manifest(title, [1])), 0.0)
        beat = Heartbeat(state="healthy", title_requests={"old": 1, "hot": 1000})
        await store.record_heartbeats([Beat("a1", 5.0, beat, None)], 100.0)
        assert await store.popularity_stamp() == 5.0
        # Ten half-lives later "old" is 1/1024 < 0.001 of a request; "hot" is about 1.
        assert await store.prune_scores(1005.0, 100.0, 1e-3) == 1
        assert [s.title for s in await store.scores()] == ["hot"]
    finally:
        await store.close()
