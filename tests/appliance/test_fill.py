"""The fill against a real origin on loopback and the edge's real cache store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from appliance.fill import Filler
from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings
from appliance.state import Status
from edge.store import CacheStore, object_key
from tests.appliance.conftest import Served, blob, make_title, until
from vcdn.metrics import new_registry
from vcdn.schemas import FillManifest, FillTitle, TitleManifest


def settings(tmp_path: Path, origin: str, **extra: object) -> ApplianceSettings:
    values: dict[str, object] = {
        "id": "a1", "site": "s1", "public_url": "http://127.0.0.1:1",
        "cache_dir": tmp_path / "cache", "cache_capacity": 10**9, "cache_free_floor": 0,
        "control_url": "http://127.0.0.1:1", "origin_url": origin, "auth": "none", **extra,
    }
    return ApplianceSettings(**values)  # type: ignore[arg-type]


def fill_manifest(*titles: TitleManifest) -> FillManifest:
    return FillManifest(
        appliance="a1", generated_at=0.0, capacity_bytes=10**9,
        titles=[FillTitle(m.title, 1.0, m.total_bytes, m.files) for m in titles],
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def filler(s: ApplianceSettings, store: CacheStore, session: aiohttp.ClientSession) -> Filler:
    return Filler(s, store, session, Status("a1", "s1"), ApplianceMetrics(new_registry()))


def pinned(store: CacheStore, title: str, path: str) -> bool:
    entry = store.lookup(object_key(title, path))
    return entry is not None and entry.pinned


async def test_manifest_titles_are_pinned_and_dropped_ones_unpinned_even_after_restart(
    tmp_path: Path, origin: Served, origin_root: Path, session: aiohttp.ClientSession
) -> None:
    t1 = make_title(origin_root, "t1", {"a.ts": blob(1000, 1)})
    t2 = make_title(origin_root, "t2", {"b.ts": blob(1000, 2)})
    s = settings(tmp_path, origin.url)
    store = CacheStore(s.cache_dir, s.cache_capacity)
    assert await filler(s, store, session).run(fill_manifest(t1, t2), download=True)
    assert pinned(store, "t1", "a.ts") and pinned(store, "t2", "b.ts")
    # "Restart": a new filler learns what was pinned from disk and unpins what was dropped.
    again = filler(s, store, session)
    assert await again.run(fill_manifest(t1), download=False)
    assert pinned(store, "t1", "a.ts") and not pinned(store, "t2", "b.ts")
    assert store.has("t2", "b.ts"), "unpinned titles stay until the space is needed"
    store.close()


async def test_a_title_is_servable_only_when_every_file_is_present(
    tmp_path: Path, origin: Served, origin_root: Path, session: aiohttp.ClientSession
) -> None:
    files = {"a.ts": blob(1000, 3), "b.ts": blob(1000, 4), "c.ts": blob(1000, 5)}
    manifest = make_title(origin_root, "t", files)
    (origin_root / "t" / "c.ts").unlink()  # the origin lost one file
    s = settings(tmp_path, origin.url)
    store = CacheStore(s.cache_dir, s.cache_capacity)
    f = filler(s, store, session)
    assert not await f.run(fill_manifest(manifest), download=True)
    assert not any(store.has("t", p) for p in files)
    assert "no source had every file" in f.status.fill.last_error
    # The file comes back: the next pass fetches only it (the others are staged, verified).
    (origin_root / "t" / "c.ts").write_bytes(files["c.ts"])
    assert await f.run(fill_manifest(manifest), download=True)
    assert all(store.has("t", p) for p in files)
    assert f.status.fill.from_origin == 3
    store.close()


async def test_bandwidth_cap_paces_the_fill(
    tmp_path: Path, origin: Served, origin_root: Path, session: aiohttp.ClientSession
) -> None:
    manifest = make_title(origin_root, "slow", {f"{i}.ts": blob(100_000, i) for i in range(4)})
    s = settings(tmp_path, origin.url, fill_bandwidth=200_000)
    store = CacheStore(s.cache_dir, s.cache_capacity)
    start = time.monotonic()
    f = filler(s, store, session)
    task = asyncio.create_task(f.run(fill_manifest(manifest), download=True))
    # Progress shows while files are still arriving, not only when each one is done.
    await until(lambda: 0 < f.status.fill.bytes_fetched < 400_000 and f.status.fill.running)
    assert await task
    took = time.monotonic() - start
    assert f.status.fill.bytes_fetched == 400_000
    # 400 kB at 200 kB/s after a 200 kB burst: at least one second, and not much more.
    assert 0.9 <= took < 5.0, took
    store.close()


async def test_a_republished_title_is_fetched_again(
    tmp_path: Path, origin: Served, origin_root: Path, session: aiohttp.ClientSession
) -> None:
    """Same path, new bytes and digest in the manifest: the held copy no longer counts."""
    old = make_title(origin_root, "re", {"a.ts": blob(2000, 1)})
    s = settings(tmp_path, origin.url)
    store = CacheStore(s.cache_dir, s.cache_capacity)
    f = filler(s, store, session)
    assert await f.run(fill_manifest(old), download=True)
    new_bytes = blob(2500, 2)
    new = make_title(origin_root, "re", {"a.ts": new_bytes})
    assert await f.run(fill_manifest(new), download=True)
    entry = store.lookup(object_key("re", "a.ts"))
    assert entry is not None and store.file_path(entry).read_bytes() == new_bytes
    assert f.status.fill.from_origin == 2
    store.close()
