"""Both stores directly: migrations, persistence, atomic popularity under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from origin.control.store import open_store
from tests.origin.control.conftest import manifest, registration
from vcdn.errors import ConfigError, StoreError
from vcdn.schemas import Heartbeat, Registration, TitleManifest, decode


async def test_migrations_run_once_and_data_survives_a_reopen(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        assert await store.schema_version() == 1
        assert await store.put_title(decode(TitleManifest, manifest("t1", [5])), 1.0) is True
    finally:
        await store.close()
    store = await open_store(db_url)
    try:
        assert await store.schema_version() == 1
        assert [s.title for s in await store.list_titles()] == ["t1"]
        assert await store.catalog_stamp() == (1, 1.0)
    finally:
        await store.close()


async def test_concurrent_heartbeats_add_up_exactly(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        for i in range(5):
            await store.put_appliance(decode(Registration, registration(f"a{i}")), 0.0)
        beat = Heartbeat(state="healthy", title_requests={"t": 1, "u": 2})
        results = await asyncio.gather(
            *(store.record_heartbeat(f"a{i % 5}", beat, 10.0, 3600.0) for i in range(50))
        )
        assert all(results)
        got = {s.title: s.score for s in await store.scores("s1")}
        assert got == {"t": pytest.approx(50.0), "u": pytest.approx(100.0)}
        assert len(await store.heartbeats("a0", 0.0, 1000)) == 10
        assert await store.record_heartbeat("nobody", beat, 10.0, 3600.0) is False
        assert await store.prune_heartbeats(11.0) == 50
        assert await store.heartbeats("a0", 0.0, 1000) == []
    finally:
        await store.close()


async def test_an_unusable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="SQLite database"):
        await open_store(f"sqlite:///{tmp_path}/file/control.db")


@pytest.mark.parametrize("url", ["mysql://x", "sqlite:///", "sqlite:relative", ""])
async def test_unsupported_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        await open_store(url)
