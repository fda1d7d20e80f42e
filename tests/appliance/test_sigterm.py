"""SIGTERM: the appliance tells the control plane it is draining, stops accepting, lets a
request in flight finish, and exits 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.appliance.conftest import (
    Served,
    api,
    appliance_toml,
    blob,
    free_port,
    make_popular,
    make_title,
    publish,
    signed,
    start_proc,
    until,
)

SIZE = 4 * 1024 * 1024


@pytest.mark.slow
async def test_sigterm_finishes_the_download_in_flight_then_exits_cleanly(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    data = blob(SIZE, 9)
    await publish(control.url, make_title(origin_root, "big", {"big.ts": data}))
    await make_popular(control.url, {"big": 1})
    port = free_port()
    config = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=port, admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        drain_timeout=10.0,
    )
    proc = await start_proc(["appliance", "--config", str(config)], tmp_path / "a.log")
    try:
        await until(lambda: proc.events("title_filled"), within=15)
        url = f"http://127.0.0.1:{port}/s/{signed('big')}/big/big.ts"
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector,
                                         read_bufsize=16 * 1024) as s, s.get(url) as resp:
            assert resp.status == 200
            got = bytearray(await resp.content.read(64 * 1024))
            proc.process.send_signal(15)
            await asyncio.sleep(0.3)
            assert proc.process.returncode is None, "it waits for the download in flight"
            # New connections are refused while the old one drains.
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as s2, s2.get(url) as r2:
                    await r2.read()
            while chunk := await resp.content.read(256 * 1024):
                got += chunk
                await asyncio.sleep(0.02)  # a slow player
        assert bytes(got) == data
        assert await asyncio.wait_for(proc.process.wait(), 15) == 0
        # Its last word to the control plane was "draining" (steering stopped at once).
        history = await api(control.url, "GET", "/appliances/a1/heartbeats?limit=1000")
        beats = sorted(history["heartbeats"], key=lambda b: b["at"])
        assert beats[-1]["heartbeat"]["state"] == "draining"
        assert proc.events("stopped")
    finally:
        if proc.process.returncode is None:
            proc.kill9()
            await proc.process.wait()
