"""Proxy mode and request bodies that come too slowly or are too large: the listener's
body limits (`vcdn.httplimits`) hold the upload forwarded upstream too."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web

from edge.app import make_app
from edge.workers import start_edge
from tests.edge.conftest import edge_settings

BODY_TIMEOUT = 0.8
CLIENTS = 20


async def _upstream(counter: dict[str, int]) -> tuple[web.AppRunner, str]:
    """An origin that reads whole request bodies and counts the requests it is in."""

    async def upload(request: web.Request) -> web.Response:
        counter["open"] += 1
        counter["seen"] += 1
        try:
            body = await request.read()
        finally:
            counter["open"] -= 1
        return web.Response(text=str(len(body)))

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/{tail:.*}", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def test_dribbling_posts_do_not_hold_upstream_connections(tmp_path: Path) -> None:
    """20 POSTs whose bodies come a byte every 0.1 s: each is cut at body_timeout (408 or
    closed), and the upstream requests they opened end with them."""
    counter = {"open": 0, "seen": 0}
    up, up_url = await _upstream(counter)
    settings = edge_settings(
        tmp_path, up_url, auth="none", mode="proxy", signing_keys="", port=0,
        body_timeout=BODY_TIMEOUT, keepalive_timeout=30.0,
    )
    runner, url = await start_edge(make_app(settings), settings, shutdown_timeout=1.0)
    host, _, port = url.removeprefix("http://").rpartition(":")
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(CLIENTS)]
    stop = asyncio.Event()

    async def dribble(writer: asyncio.StreamWriter) -> None:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        try:
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass

    async def until_closed(reader: asyncio.StreamReader) -> bytes:
        data = b""
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionError:
            pass
        return data

    try:
        start = time.monotonic()
        tasks = [asyncio.create_task(dribble(w)) for _, w in conns]
        answers = await asyncio.wait_for(
            asyncio.gather(*(until_closed(r) for r, _ in conns)), BODY_TIMEOUT + 8
        )
        took = time.monotonic() - start
        stop.set()
        await asyncio.gather(*tasks)
        assert took < BODY_TIMEOUT + 8
        for answer in answers:
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert counter["seen"] > 0  # the uploads did reach the upstream
        for _ in range(100):
            if counter["open"] == 0:
                break
            await asyncio.sleep(0.05)
        assert counter["open"] == 0
    finally:
        for _, w in conns:
            w.close()
        await runner.cleanup()
        await up.cleanup()


async def test_a_chunked_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A chunked upload that grows past max_body_bytes is not forwarded whole: 413."""
    counter = {"open": 0, "seen": 0}
    up, up_url = await _upstream(counter)
    settings = edge_settings(
        tmp_path, up_url, auth="none", mode="proxy", signing_keys="", port=0,
        max_body_bytes=1000,
    )
    runner, url = await start_edge(make_app(settings), settings, shutdown_timeout=1.0)
    host, _, port = url.removeprefix("http://").rpartition(":")
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        chunk = b"a" * 600
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 3 + b"0\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413"), head
    finally:
        await runner.cleanup()
        await up.cleanup()
