"""Signing-key lifecycle on a real `vcdn edge` process: SIGHUP and a changed keys file
put new keys into service without a restart; keys past not_after and non-canonical
tokens get 403."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.edge.scripted_origin import Script, ScriptedOrigin
from vcdn import tokens

pytestmark = pytest.mark.slow

SECRETS = {"k1": "0123456789abcdef-one", "k2": "0123456789abcdef-two", "k3": "0123456789abcdef-3"}


def _token(kid: str, title: str = "demo", expires: int | None = None) -> str:
    when = int(time.time()) + 600 if expires is None else expires
    return tokens.sign(title, key_id=kid, key=SECRETS[kid].encode(), expires=when)


async def _status(s: aiohttp.ClientSession, url: str, token: str) -> int:
    async with s.get(f"{url}/s/{token}/demo/a.m3u8") as r:
        await r.read()
        return r.status


async def _until(s: aiohttp.ClientSession, url: str, token: str, want: int, within: float) -> int:
    deadline = time.monotonic() + within
    while True:
        status = await _status(s, url, token)
        if status == want or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def test_sighup_and_a_changed_keys_file_reload_the_keys(  # type: ignore[no-untyped-def]
    aiohttp_server, tmp_path: Path
) -> None:
    """k1 serves; after the keys file lists k2 and SIGHUP, k2 serves and k1 (gone) gets
    403; writing k3 into the file, without a signal, puts k3 into service too."""
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/a.m3u8"] = Script(b"#EXTM3U\n", headers={"Cache-Control": "max-age=60"})
    up = await aiohttp_server(origin.app)
    keys = tmp_path / "signing.keys"
    keys.write_text(f"k1:{SECRETS['k1']}\n")
    config = tmp_path / "edge.toml"
    config.write_text(
        f'cache_dir = "{tmp_path / "cache"}"\nupstream = "{str(up.make_url("")).rstrip("/")}"\n'
        f'signing_keys_file = "{keys}"\nport = 0\nworkers = 2\ncapacity = "64MiB"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vcdn.cli", "edge", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on http://" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        async with aiohttp.ClientSession() as s:
            assert await _status(s, url, _token("k1")) == 200
            assert await _status(s, url, _token("k2")) == 403
            keys.write_text(f"k2:{SECRETS['k2']}\n")
            proc.send_signal(signal.SIGHUP)
            # Both workers reload (each request may reach either one).
            assert await _until(s, url, _token("k2"), 200, 10) == 200
            for _ in range(6):
                assert await _status(s, url, _token("k2")) == 200
                assert await _status(s, url, _token("k1")) == 403
            keys.write_text(f"k3:{SECRETS['k3']}\nk2:{SECRETS['k2']}\n")
            assert await _until(s, url, _token("k3"), 200, 15) == 200
            # A non-canonical spelling of a valid token: leading zero in the expiry.
            kid, expires, sig = _token("k3").split(".")
            assert await _status(s, url, f"{kid}.0{expires}.{sig}") == 403
        assert proc.returncode is None  # never restarted
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
