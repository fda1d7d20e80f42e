"""The daemon in-process against the real control API and origin over loopback."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    ADMIN_TOKEN,
    Served,
    api,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    run_appliance,
    signed,
    until,
)


async def test_registers_fills_pins_and_serves_a_title(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    """Start → registered and beating; the manifest title is fetched, verified, pinned and
    served from cache on a signed URL."""
    files = {"master.m3u8": b"#EXTM3U\n", "v/seg_00001.ts": blob(50_000, 1)}
    manifest = make_title(origin_root, "tiny", files)
    await publish(control.url, manifest)
    await make_popular(control.url, {"tiny": 5})
    path = appliance_toml(
        tmp_path / "a1.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    try:
        app = running.appliance
        await until(lambda: app.status.fill.titles_complete == 1 and app.status.last_heartbeat)
        assert app.edge.store.has("tiny", "v/seg_00001.ts")
        listing = await api(control.url, "GET", "/appliances")
        mine = next(a for a in listing["appliances"] if a["id"] == "a1")
        assert mine["state"] == "healthy"
        async with aiohttp.ClientSession() as s:
            url = f"{running.urls['public']}/s/{signed('tiny')}/tiny/v/seg_00001.ts"
            async with s.get(url) as resp:
                assert resp.status == 200
                assert await resp.read() == files["v/seg_00001.ts"]
            async with s.get(
                running.urls["admin"] + "/api/v1/status",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as resp:
                status = await resp.json()
        assert status["fill"]["titles_complete"] == 1
        assert status["fill"]["from_origin"] == 2
        assert status["served"]["hits"] >= 1
    finally:
        await running.stop()
