"""kill -9 in the middle of a fill, then restart: nothing partial is served, the fill
resumes (verified staged files are reused, not fetched again), the index agrees with disk."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest

from edge.store import CacheStore
from onebox.procs import free_port
from tests.appliance.conftest import (
    Served,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    signed,
    start_proc,
    until,
)

FILES = 4
FILE_BYTES = 96 * 1024


def staged(cache: Path, title: str) -> list[Path]:
    folder = cache / "staging" / title
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part")]


def index_agrees_with_disk(cache: Path) -> CacheStore:
    """Every ready row has its file with the right size and sha256, and no file lacks a row."""
    store = CacheStore(cache, 64 * 1024 * 1024)
    report = store.reconcile()
    files = {p.name: p for p in (cache / "objects").rglob("*") if p.is_file()}
    entries = [e for e in map(store.lookup, store.keys()) if e is not None]
    rows = {e.file: e for e in entries}
    assert set(files) == set(rows), report
    for name, entry in rows.items():
        data = files[name].read_bytes()
        assert len(data) == entry.size
        assert entry.sha256 is None or hashlib.sha256(data).hexdigest() == entry.sha256
    return store


@pytest.mark.slow
async def test_kill_9_mid_fill_then_restart_resumes_and_serves_only_whole_files(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    files = {f"v/seg_{i:05d}.ts": blob(FILE_BYTES, i) for i in range(FILES)}
    await publish(control.url, make_title(origin_root, "crashy", files))
    await make_popular(control.url, {"crashy": 3})
    cache = tmp_path / "cache"
    port, admin = free_port(), free_port()
    config = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=port, admin_port=admin, cache_dir=cache,
        control_url=control.url, origin_url=origin.url, fill_concurrency=1,
        fill_bandwidth=str(FILE_BYTES * 2),  # about two files a second: slow enough to hit
    )
    log = tmp_path / "appliance.log"
    proc = await start_proc(["appliance", "--config", str(config)], log)
    try:
        # Kill once some files are staged and verified but the title is not complete.
        await until(lambda: len(staged(cache, "crashy")) >= 1, within=15)
        proc.kill9()
        await proc.process.wait()
    finally:
        if proc.process.returncode is None:
            proc.kill9()
            await proc.process.wait()
    before = len(proc.events("fill_file"))
    assert 1 <= before < FILES, "the kill should land in the middle of the fill"

    store = index_agrees_with_disk(cache)
    assert not any(store.has("crashy", p) for p in files), "no file of a partial title served"
    store.close()

    # Restart without the cap: the fill resumes and only fetches what was not staged.
    proc = await start_proc(
        ["appliance", "--config", str(config), "--fill-bandwidth", "0"], log
    )
    try:
        url = proc.line.split("listening on ")[1].split()[0]
        async with aiohttp.ClientSession() as s:
            async def complete() -> bool:
                async with s.get(f"http://127.0.0.1:{admin}/healthz") as r:
                    r.raise_for_status()
                return any(e.get("title") == "crashy" for e in proc.events("title_filled"))

            await until(complete, within=15)
            for path, data in files.items():
                async with s.get(f"{url}/s/{signed('crashy')}/crashy/{path}") as resp:
                    assert resp.status == 200
                    assert await resp.read() == data
        fetched_after = len(proc.events("fill_file")) - before
        assert fetched_after == FILES - before, "files staged before the kill are reused"
        assert await proc.terminate() == 0
    finally:
        if proc.process.returncode is None:
            proc.kill9()
            await proc.process.wait()
    await asyncio.to_thread(lambda: index_agrees_with_disk(cache).close())
