"""A full cache disk, for real: a small tmpfs as the cache directory (needs root).

Serving what is cached continues, the fill pauses, health and metrics say why, nothing is
left half-written; once space is back, fill-now completes the title.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    ADMIN_TOKEN,
    Served,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    run_appliance,
    signed,
    until,
)
from tests.conftest import tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "size=3m") as where:
        yield where


def fill_to_the_brim(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    assert shutil.disk_usage(path.parent).free < 64 * 1024


def sample(app: object, name: str, **labels: str) -> float:
    return app.edge.registry.get_sample_value(name, labels) or 0.0  # type: ignore[attr-defined]


@pytest.mark.root
async def test_full_disk_pauses_fill_keeps_serving_says_why_and_resumes(
    tmp_path: Path, small_disk: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    small = {"s.ts": blob(200_000, 1)}
    big = {f"b{i}.ts": blob(300_000, 10 + i) for i in range(3)}
    await publish(control.url, make_title(origin_root, "small", small))
    await make_popular(control.url, {"small": 100})
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=small_disk, control_url=control.url, origin_url=origin.url,
        cache_free_floor="256KiB", fill_bandwidth="300KB", fill_window="00:00-00:01",
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    app = running.appliance
    public, admin = running.urls["public"], running.urls["admin"]
    filler = small_disk / "filler"
    try:
        app.fill_now()
        await until(lambda: app.status.fill.titles_complete == 1, within=10)
        await publish(control.url, make_title(origin_root, "big", big))
        await make_popular(control.url, {"big": 50})
        app.fill_now()
        # Fill the disk while the (rate-limited) fill of "big" is writing.
        await until(lambda: list((small_disk / "staging" / "big").rglob("*.part")), within=10)
        fill_to_the_brim(filler)
        await until(lambda: app.status.fill.paused, within=10)

        assert "full" in app.status.fill.paused
        assert sample(app, "vcdn_appliance_fill_paused", reason="disk_full") == 1
        assert not (small_disk / "staging" / "big").exists(), "nothing half-written is kept"
        assert not app.edge.store.has("big", "b0.ts")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{public}/s/{signed('small')}/small/s.ts") as resp:
                assert resp.status == 200 and await resp.read() == small["s.ts"]
            async with s.get(f"{admin}/healthz") as resp:
                assert "full" in (await resp.json())["fill_paused"]
            async with s.get(f"{admin}/metrics") as resp:
                assert 'vcdn_appliance_fill_paused{reason="disk_full"} 1.0' in await resp.text()
            beat = await app.collect(s)
            assert beat.checks["free_space"].ok is False
            assert "under" in beat.checks["free_space"].detail

            # Space comes back (an operator cleans up): fill-now completes the title.
            filler.unlink()
            async with s.post(f"{admin}/api/v1/fill-now",
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
                assert resp.status == 202
            await until(lambda: app.status.fill.titles_complete == 2, within=15)
            assert app.status.fill.paused == ""
            assert sample(app, "vcdn_appliance_fill_paused", reason="disk_full") == 0
            async with s.get(f"{public}/s/{signed('big')}/big/b2.ts") as resp:
                assert resp.status == 200 and await resp.read() == big["b2.ts"]
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        await running.stop()


@pytest.mark.root
async def test_fill_pauses_before_writing_when_a_title_would_cross_the_floor(
    tmp_path: Path, small_disk: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    """The common case: the manifest asks for more than the disk has; nothing is written."""
    huge = {"h.ts": blob(2_000_000, 3)}
    await publish(control.url, make_title(origin_root, "huge", huge))
    await make_popular(control.url, {"huge": 5})
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=small_disk, control_url=control.url, origin_url=origin.url,
        cache_free_floor="512KiB",
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    app = running.appliance
    try:
        await until(lambda: app.status.fill.paused, within=10)
        assert "floor" in app.status.fill.paused
        assert sample(app, "vcdn_appliance_fill_paused", reason="free_space_floor") == 1
        staging = small_disk / "staging"
        assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
        assert not app.edge.store.has("huge", "h.ts")
    finally:
        await running.stop()
