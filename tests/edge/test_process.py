"""`vcdn edge` as real processes: kill -9 during a fill, several workers on one port,
SIGTERM, and command-line errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.edge.conftest import KEYS, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    env["VCDN_SIGNING_KEYS"] = KEYS
    env["PYTHONPATH"] = str(ROOT)
    return env


@asynccontextmanager
async def edge_process(
    cache: Path, upstream: str, *args: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vcdn.cli",
        "edge",
        "--cache-dir",
        str(cache),
        "--upstream",
        upstream,
        "--port",
        "0",
        "--capacity",
        "256MiB",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on http://" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _index_agrees_with_disk(cache: Path) -> None:
    db = sqlite3.connect(cache / "index.db")
    rows = {(f, s) for f, s in db.execute("SELECT file, size FROM objects WHERE state='ready'")}
    db.close()
    files = {(p.name, p.stat().st_size) for d in (cache / "objects").iterdir() for p in d.iterdir()}
    assert rows == files


async def test_kill_9_during_fill_then_restart(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A worker killed mid-fill leaves no object; after restart the temp file is gone, the
    index agrees with the disk and the object is filled again, whole."""
    data = os.urandom(4 * 1024 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/seg.m4s"] = Script(data, pieces=40, delay=0.05)
    up = await aiohttp_server(origin.app)
    upstream = str(up.make_url("")).rstrip("/")
    cache = tmp_path / "cache"
    async with edge_process(cache, upstream, "--workers", "1") as (proc, url):
        async with aiohttp.ClientSession() as s:
            async with s.get(url + signed("seg.m4s")) as resp:
                assert resp.status == 200
                got = 0
                while got < 1024 * 1024:
                    got += len(await resp.content.readany())
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
    assert list((cache / "tmp").glob("*.part")), "the fill should have left its temp file"
    _index_agrees_with_disk(cache)
    assert not any((cache / "objects").rglob("*-*"))
    async with edge_process(cache, upstream, "--workers", "1") as (_proc, url):
        assert list((cache / "tmp").iterdir()) == []
        origin.scripts["/v/demo/seg.m4s"] = Script(data)
        async with aiohttp.ClientSession() as s:
            async with s.get(url + signed("seg.m4s")) as resp:
                assert resp.status == 200 and zlib.crc32(await resp.read()) == zlib.crc32(data)
        await asyncio.sleep(0.3)
        _index_agrees_with_disk(cache)
    assert origin.count("/v/demo/seg.m4s") == 2


async def test_two_workers_fill_once(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two worker processes on one port: 40 clients on separate connections, one upstream
    fetch, identical bytes; SIGTERM stops the whole group cleanly."""
    data = os.urandom(2 * 1024 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/herd.m4s"] = Script(data, pieces=20, delay=0.05)
    up = await aiohttp_server(origin.app)
    async with edge_process(
        tmp_path / "cache", str(up.make_url("")).rstrip("/"), "--workers", "2"
    ) as (proc, url):

        async def one() -> tuple[int, int]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.get(url + signed("herd.m4s")) as resp:
                    return resp.status, zlib.crc32(await resp.read())

        results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(40))), 60)
        assert set(results) == {(200, zlib.crc32(data))}
        assert origin.count("/v/demo/herd.m4s") == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


@pytest.mark.parametrize(
    ("args", "env_keys", "message"),
    [
        (["--upstream", "http://127.0.0.1:1"], KEYS, "cache_dir"),
        (["--cache-dir", "{tmp}", "--upstream", "http://127.0.0.1:1"], "", "signing_keys"),
        (["--cache-dir", "{tmp}", "--upstream", "ftp://x"], KEYS, "upstream"),
        (
            ["--cache-dir", "{tmp}", "--upstream", "http://x", "--capacity", "lots"],
            KEYS,
            "capacity",
        ),
    ],
)
async def test_cli_errors_are_one_clear_line(
    tmp_path: Path, args: list[str], env_keys: str, message: str
) -> None:
    """Bad settings: exit 1 and a sentence naming the setting, no traceback."""
    env = _env()
    env["VCDN_SIGNING_KEYS"] = env_keys
    if not env_keys:
        del env["VCDN_SIGNING_KEYS"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vcdn.cli",
        "edge",
        *[a.format(tmp=tmp_path) for a in args],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert message in err.decode() and "Traceback" not in err.decode()


async def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """A port another server holds: exit 1 naming host and port, no traceback."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vcdn.cli",
            "edge",
            "--cache-dir",
            str(tmp_path / "c"),
            "--upstream",
            "http://127.0.0.1:1",
            "--port",
            str(port),
            "--workers",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env(),
            cwd=ROOT,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = err.decode()
    assert f"Cannot listen on 127.0.0.1:{port}" in text and "Traceback" not in text
