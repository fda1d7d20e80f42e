"""The origin's RAM fast path, on a real server: hot answers match the normal ones, the
table still holds once objects are hot, and changes on disk are noticed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from origin.content import hotpath
from origin.content.app import hit_answer, make_app
from origin.content.settings import OriginSettings
from tests.http_cases import CASES, Case, Resource, check
from tests.origin.content.conftest import TITLE
from vcdn.httplimits import HttpLimits
from vcdn.httpserve.server import start


@pytest.fixture
async def hot_origin(store) -> AsyncIterator[tuple[str, Path, dict[str, bytes]]]:
    root, files = store
    app = make_app(OriginSettings(root=root))
    runner, url = await start(
        app, "127.0.0.1", 0, HttpLimits(), answer=hit_answer(app)
    )
    try:
        yield url, root, files
    finally:
        await runner.cleanup()


async def get(session: aiohttp.ClientSession, url: str, **kw) -> tuple[int, dict, bytes]:
    async with session.get(url, **kw) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


async def hot_hits(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("vcdn_origin_hot_hits_total"):
                return float(line.split()[1])
    return 0.0


async def test_second_get_is_hot_and_identical(hot_origin) -> None:
    url, _, files = hot_origin
    async with aiohttp.ClientSession() as s:
        first = await get(s, f"{url}/v/{TITLE}/small.bin")
        second = await get(s, f"{url}/v/{TITLE}/small.bin")
        assert await hot_hits(s, url) == 1.0
    assert first[0] == second[0] == 200
    assert first[2] == second[2] == files["small.bin"]
    first[1].pop("date"), second[1].pop("date")
    assert first[1] == second[1]


@pytest.mark.parametrize("name", ["v1/seg_00001.m4s", "large.bin"])  # in RAM, on disk
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_table_holds_once_hot(hot_origin, case: Case, name: str) -> None:
    """Ranges and conditionals on a hot object get the planner's answer on the fast path."""
    url, _, files = hot_origin
    target = f"{url}/v/{TITLE}/{name}"
    async with aiohttp.ClientSession() as s:
        _, headers, _ = await get(s, target)
        hits = await hot_hits(s, url)
        res = Resource(files[name], headers["etag"], headers["last-modified"])
        async with s.request(case.method, target, headers=case.request_headers(res)) as resp:
            body = await resp.read()
            check(case, res, resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        assert await hot_hits(s, url) == hits + 1


async def test_hot_head_then_get_on_one_connection(hot_origin) -> None:
    """A fast-path HEAD sends no body, so the next response on the connection parses."""
    url, _, files = hot_origin
    host, port = url.removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as s:
        await get(s, f"{url}/v/{TITLE}/small.bin")  # make it hot
    reader, writer = await asyncio.open_connection(host, int(port))
    req = f"HEAD /v/{TITLE}/small.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    req += f"GET /v/{TITLE}/small.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    writer.write(req.encode())
    data = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    head1, _, rest = data.partition(b"\r\n\r\n")
    assert head1.startswith(b"HTTP/1.1 200") and b"Content-Length: 10000" in head1
    head2, _, body2 = rest.partition(b"\r\n\r\n")
    assert head2.startswith(b"HTTP/1.1 200")
    assert body2 == files["small.bin"]


async def test_rewritten_and_deleted_files_are_noticed(hot_origin, monkeypatch) -> None:
    monkeypatch.setattr(hotpath, "RECHECK_SECONDS", 0.0)
    url, root, _ = hot_origin
    path = root / TITLE / "small.bin"
    async with aiohttp.ClientSession() as s:
        await get(s, f"{url}/v/{TITLE}/small.bin")
        tmp = path.with_name(".small.tmp")
        tmp.write_bytes(b"new bytes")
        os.replace(tmp, path)  # how the packager republishes: a new inode
        status, _, body = await get(s, f"{url}/v/{TITLE}/small.bin")
        assert (status, body) == (200, b"new bytes")
        status, _, body = await get(s, f"{url}/v/{TITLE}/small.bin")  # hot again
        assert (status, body) == (200, b"new bytes")
        path.unlink()
        status, _, _ = await get(s, f"{url}/v/{TITLE}/small.bin")
        assert status == 404


async def test_connection_close_and_queries_take_the_normal_path(hot_origin) -> None:
    url, _, files = hot_origin
    async with aiohttp.ClientSession() as s:
        await get(s, f"{url}/v/{TITLE}/small.bin")
        before = await hot_hits(s, url)
        status, _, body = await get(
            s, f"{url}/v/{TITLE}/small.bin", headers={"Connection": "close"}
        )
        assert status == 200 and body == files["small.bin"]
        status, _, body = await get(s, f"{url}/v/{TITLE}/small.bin?x=1")
        assert status == 200 and body == files["small.bin"]
        assert await hot_hits(s, url) == before


async def test_client_leaving_a_hot_large_body_is_quiet(hot_origin, caplog) -> None:
    """A client that disconnects mid-sendfile on the fast path leaves no traceback and the
    server keeps answering."""
    url, root, _ = hot_origin
    data = os.urandom(16 * 1024 * 1024)  # far more than socket buffers hold
    (root / TITLE / "huge.bin").write_bytes(data)
    host, port = url.removeprefix("http://").split(":")
    big = f"/v/{TITLE}/huge.bin"
    async with aiohttp.ClientSession() as s:
        await get(s, url + big)  # now known to the fast path
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.read(1000)
        writer.transport.abort()
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as s:
        status, _, body = await get(s, url + big)
    assert status == 200 and body == data
    assert "Error handling request" not in caplog.text
    assert "Traceback" not in caplog.text


async def test_pipelining_without_reading_is_flow_controlled(store) -> None:
    """A client that pipelines many requests for a hot object and reads nothing does not
    make the server buffer the answers without bound."""
    root, _ = store
    body = os.urandom(200_000)
    (root / TITLE / "v1" / "hot.m4s").write_bytes(body)
    app = make_app(OriginSettings(root=root))
    runner, url = await start(
        app, "127.0.0.1", 0, HttpLimits(), answer=hit_answer(app)
    )
    try:
        async with aiohttp.ClientSession() as s:
            await get(s, f"{url}/v/{TITLE}/v1/hot.m4s")  # hot now
        host, port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        request = f"GET /v/{TITLE}/v1/hot.m4s HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        writer.write(request * 300)  # 60 MB of answers if all were produced
        await asyncio.sleep(1.0)
        assert runner.server is not None
        buffered = max(
            (h.transport.get_write_buffer_size() for h in runner.server.connections
             if h.transport is not None),
            default=0,
        )
        assert buffered < 2 * 1024 * 1024, buffered
        writer.transport.abort()
    finally:
        await runner.cleanup()
