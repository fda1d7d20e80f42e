"""The heartbeat write-behind buffer over a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from origin.control.beats import HeartbeatBuffer
from origin.control.store import Beat, Store, heartbeat_json, open_store
from tests.origin.control.conftest import manifest
from vcdn.errors import StoreError
from vcdn.schemas import HealthState, Heartbeat, Registration, TitleManifest, decode


def beat(appliance: str, at: float, state: HealthState = "healthy") -> Beat:
    hb = Heartbeat(state=state, title_requests={"t": 1})
    return Beat(appliance, at, hb, heartbeat_json(hb))


async def _store(tmp_path: Path) -> Store:
    store = await open_store(f"sqlite:///{tmp_path}/c.db")
    await store.put_title(decode(TitleManifest, manifest("t", [1])), 0.0)  # counted: in catalog
    await store.put_appliance(
        Registration(id="a1", site="s1", public_url="http://a1:80", capacity_bytes=1), 0.0
    )
    return store


async def test_beats_wait_then_reach_the_store_in_the_background(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    buffer = HeartbeatBuffer(store, 3600.0, delay=0.05)
    runner = asyncio.create_task(buffer.run())
    try:
        assert await buffer.is_known("a1") and not await buffer.is_known("zz")
        for i in range(3):
            await buffer.add(beat("a1", float(i)))
        assert await store.heartbeats("a1", 0.0, 10) == []  # not yet written
        for _ in range(250):  # bounded: at most 5 s
            await asyncio.sleep(0.02)
            if buffer.stored == 3:
                break
        assert len(await store.heartbeats("a1", 0.0, 10)) == 3
    finally:
        runner.cancel()
        await store.close()


async def test_flush_and_close_write_what_is_queued_and_delay_zero_writes_through(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    try:
        buffer = HeartbeatBuffer(store, 3600.0, delay=60.0)
        await buffer.add(beat("a1", 1.0))
        await buffer.flush()
        await buffer.add(beat("a1", 2.0))
        await buffer.close()
        assert [h.at for h in await store.heartbeats("a1", 0.0, 10)] == [1.0, 2.0]
        through = HeartbeatBuffer(store, 3600.0, delay=0)
        await through.add(beat("a1", 3.0))
        assert len(await store.heartbeats("a1", 0.0, 10)) == 3
    finally:
        await store.close()


async def test_a_failing_store_counts_dropped_beats_and_raises_on_flush(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    buffer = HeartbeatBuffer(store, 3600.0, delay=60.0)
    await buffer.add(beat("a1", 1.0))
    await store.close()
    with pytest.raises(StoreError):
        await buffer.flush()
    assert buffer.dropped == 1
    await buffer.close()  # nothing left; never raises


async def test_beats_of_an_appliance_deleted_meanwhile_are_dropped_and_it_is_forgotten(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    try:
        buffer = HeartbeatBuffer(store, 3600.0, delay=60.0)
        assert await buffer.is_known("a1")
        await buffer.add(beat("a1", 1.0))
        await store.delete_appliance("a1")
        await buffer.flush()
        assert buffer.stored == 0
        assert not await buffer.is_known("a1")
    finally:
        await store.close()


async def test_history_keeps_one_beat_per_interval_while_every_beat_updates_the_state(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    try:
        buffer = HeartbeatBuffer(store, 3600.0, delay=60.0, history_every=60.0)
        for at in (0.0, 10.0, 50.0, 60.0, 70.0, 125.0):
            await buffer.add(beat("a1", at))
        await buffer.add(beat("a1", 130.0, "draining"))  # a change of state is always kept
        await buffer.add(beat("a1", 135.0, "draining"))
        await buffer.flush()
        kept = [h.at for h in await store.heartbeats("a1", 0.0, 10)]
        assert kept == [0.0, 60.0, 125.0, 130.0]
        record = await store.get_appliance("a1")
        assert record is not None and record.last_heartbeat == 135.0
        scores = {s.title: s.score for s in await store.scores("s1")}
        assert scores["t"] == pytest.approx(8.0, rel=0.05)  # all eight beats counted
    finally:
        await store.close()


async def test_flush_waits_for_a_write_already_in_flight(tmp_path: Path) -> None:
    """Read-your-writes: a reader flushes before it reads. When the background flusher has
    just taken the queue and is still writing it, that flush must wait for the write, not
    return at once because the queue is empty (history reads came back empty under load)."""
    store = await _store(tmp_path)
    try:
        buffer = HeartbeatBuffer(store, 3600.0, delay=60.0)
        await buffer.add(beat("a1", 1.0))
        in_flight = asyncio.create_task(buffer.flush())
        await asyncio.sleep(0)  # it takes the queue and awaits the store
        await buffer.flush()
        assert buffer.stored == 1
        assert [h.at for h in await store.heartbeats("a1", 0.0, 10)] == [1.0]
        await in_flight
    finally:
        await store.close()
