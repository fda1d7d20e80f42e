"""Signing-key reload on a real `vcdn appliance` process: SIGHUP and a changed keys file
put a new key set into service without a restart (a restart would drop every player)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp
import pytest

from onebox.procs import free_port
from tests.appliance.conftest import (
    SIGNING_KEYS,
    Served,
    appliance_toml,
    blob,
    make_title,
    publish,
    signed,
    start_proc,
    until,
)

pytestmark = pytest.mark.slow

NEW_KEY = "k2:signing-secret-new-0123456789"


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        await r.read()
        return r.status


async def test_sighup_and_a_changed_keys_file_reload_the_appliance_keys(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    """A URL signed with k2 is 403 while the keys file lists only k1; after k2 is written
    in and SIGHUP sent it is served; after the file alone changes back to k1, 403 again."""
    data = blob(64 * 1024, 3)
    await publish(control.url, make_title(origin_root, "demo", {"a.ts": data}))
    keys = tmp_path / "signing.keys"
    # Padded (a line is stripped when read) to the size of the two-key file below.
    keys.write_text(SIGNING_KEYS + " " * (len(NEW_KEY) + 1) + "\n")
    port = free_port()
    config = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=port, admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        signing_keys="", signing_keys_file=str(keys),
    )
    proc = await start_proc(["appliance", "--config", str(config)], tmp_path / "a.log",
                            env={"VCDN_SIGNING_KEYS": ""})
    try:
        base = f"http://127.0.0.1:{port}/s"
        old_url = f"{base}/{signed('demo')}/demo/a.ts"
        new_url = f"{base}/{signed('demo', NEW_KEY)}/demo/a.ts"
        assert await _status(old_url) == 200
        assert await _status(new_url) == 403

        # Same size and mtime as before, so the file poll cannot see it: only SIGHUP can.
        before = keys.stat()
        keys.write_text(f"{NEW_KEY}\n{SIGNING_KEYS}\n")
        assert keys.stat().st_size == before.st_size
        os.utime(keys, ns=(before.st_atime_ns, before.st_mtime_ns))
        proc.process.send_signal(signal.SIGHUP)
        await until(lambda: proc.events("keys_reloaded"), within=10)
        assert proc.events("keys_reloaded")[0]["reason"] == "sighup"
        assert await _status(new_url) in (200, 206)
        assert await _status(old_url) == 200

        # The file alone changes (no signal): k2 leaves service within the poll interval.
        keys.write_text(SIGNING_KEYS + "\n")

        async def refused() -> bool:
            return await _status(new_url) == 403

        await until(refused, within=15, every=0.1)
        assert any(e["reason"] == "file_changed" and e["key_ids"] == ["k1"]
                   for e in proc.events("keys_reloaded"))
        assert await _status(old_url) == 200
        assert proc.process.returncode is None  # never restarted
        assert await proc.terminate(20) == 0
    finally:
        if proc.process.returncode is None:
            proc.kill9()
            await proc.process.wait()
