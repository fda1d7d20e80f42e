"""SIGTERM: the appliance tells the control plane it is draining, stops accepting, lets a
request in flight finish, and exits 0."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from onebox.procs import free_port
from tests.appliance.conftest import (
    Served,
    api,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    signed,
    start_proc,
    until,
)

# Larger than what loopback socket buffers can swallow, so the response is still being
# sent when SIGTERM arrives.
SIZE = 24 * 1024 * 1024
READ_CHUNK = 64 * 1024


async def slow_client(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A player with a small receive window that has read only the response head."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_CHUNK)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a1\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return reader, writer


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
        drain_timeout=20.0,
    )
    proc = await start_proc(["appliance", "--config", str(config)], tmp_path / "a.log")
    try:
        await until(lambda: proc.events("title_filled"), within=20)
        path = f"/s/{signed('big')}/big/big.ts"
        reader, writer = await slow_client(port, path)
        got = bytearray(await reader.read(READ_CHUNK))
        proc.process.send_signal(15)
        await asyncio.sleep(0.5)
        assert proc.process.returncode is None, "it waits for the download in flight"
        # New connections are refused while the old one drains.
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
                await r.read()
        while chunk := await reader.read(1024 * 1024):
            got += chunk
        writer.close()
        assert bytes(got) == data
        assert await asyncio.wait_for(proc.process.wait(), 20) == 0
        # Its last word to the control plane was "draining" (steering stopped at once).
        history = await api(control.url, "GET", "/appliances/a1/heartbeats?limit=1000")
        beats = sorted(history["heartbeats"], key=lambda b: b["at"])
        assert beats[-1]["heartbeat"]["state"] == "draining"
        assert proc.events("stopped")
    finally:
        if proc.process.returncode is None:
            proc.kill9()
            await proc.process.wait()
