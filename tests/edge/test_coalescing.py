"""A thundering herd on a cold object costs one upstream request, and every client
streams bytes before the fill completes."""

from __future__ import annotations

import asyncio
import os
import zlib

import aiohttp
import pytest

from edge.app import make_app
from tests.edge.conftest import edge_settings, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin

SIZE = 8 * 1024 * 1024


async def _client(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, int, int, float]:
    loop = asyncio.get_running_loop()
    async with session.get(url, headers=headers) as resp:
        crc, n, first = 0, 0, 0.0
        async for chunk in resp.content.iter_any():
            if not n:
                first = loop.time()
            crc = zlib.crc32(chunk, crc)
            n += len(chunk)
        return resp.status, n, crc, first


@pytest.mark.slow
async def test_200_clients_one_upstream_request(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """200 concurrent GETs of a cold 8 MiB object: 1 upstream GET, identical bytes, and
    each client's first byte arrives before the upstream has finished sending."""
    data = os.urandom(SIZE)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/big.m4s"] = Script(data, pieces=40, delay=0.03)
    up = await aiohttp_server(origin.app)
    edge = await aiohttp_server(make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/"))))
    url = str(edge.make_url(signed("big.m4s")))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = await asyncio.wait_for(
            asyncio.gather(*(_client(session, url, {}) for _ in range(200))), 60
        )
    assert origin.count("/v/demo/big.m4s") == 1
    want = zlib.crc32(data)
    assert all(r[:3] == (200, SIZE, want) for r in results)
    done = origin.finished["/v/demo/big.m4s"]
    late = [r[3] for r in results if r[3] >= done]
    assert not late, f"{len(late)} clients got their first byte only after the fill completed"


async def test_ranges_inside_a_filling_object(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Clients asking for ranges of an object being filled get exactly their bytes from
    the one fill; a range far ahead of the fill is fetched upstream as a range."""
    data = os.urandom(2 * 1024 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/r.m4s"] = Script(data, pieces=20, delay=0.02)
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), far_ahead=1024 * 1024)
    edge = await aiohttp_server(make_app(settings))
    url = str(edge.make_url(signed("r.m4s")))
    async with aiohttp.ClientSession() as session:
        full = asyncio.create_task(_client(session, url, {}))
        await asyncio.sleep(0.05)
        near = _client(session, url, {"Range": "bytes=1000-99999"})
        far = _client(session, url, {"Range": "bytes=2000000-2000099"})
        r_full, r_near, r_far = await asyncio.gather(full, near, far)
    assert r_full[:3] == (200, len(data), zlib.crc32(data))
    assert r_near[:3] == (206, 99000, zlib.crc32(data[1000:100000]))
    assert r_far[:3] == (206, 100, zlib.crc32(data[2000000:2000100]))
    fills = [s for s in origin.seen if "Range" not in s.headers]
    ranged = [s for s in origin.seen if "Range" in s.headers]
    assert len(fills) == 1
    assert [s.headers["Range"] for s in ranged] == ["bytes=2000000-2000099"]


async def test_failed_fill_is_never_served(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An upstream that breaks off mid-body: the client's connection is cut (never a short
    body under a full Content-Length), nothing is stored, and the next request refills."""
    data = os.urandom(1024 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/x.m4s"] = Script(data, pieces=8, delay=0.01, break_after=300_000)
    up = await aiohttp_server(origin.app)
    edge = await aiohttp_server(make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/"))))
    url = str(edge.make_url(signed("x.m4s")))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await _client(session, url, {})
        assert not list((tmp_path / "cache" / "tmp").iterdir())
        origin.scripts["/v/demo/x.m4s"] = Script(data)
        assert (await _client(session, url, {}))[:3] == (200, len(data), zlib.crc32(data))


async def test_broken_fill_resumes_with_a_range(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An upstream that breaks off mid-body: the fill asks for the rest with Range and
    If-Range, the clients never notice, and the stored object is whole."""
    data = os.urandom(1024 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/r.m4s"] = Script(
        data,
        pieces=8,
        delay=0.01,
        break_after=300_000,
        breaks=1,
        ranges=True,
        etag='"strong1"',
        headers={"Cache-Control": "max-age=600"},
    )
    up = await aiohttp_server(origin.app)
    edge = await aiohttp_server(make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/"))))
    url = str(edge.make_url(signed("r.m4s")))
    async with aiohttp.ClientSession() as session:
        assert (await _client(session, url, {}))[:3] == (200, len(data), zlib.crc32(data))
        await asyncio.sleep(0.05)
        assert (await _client(session, url, {}))[:3] == (200, len(data), zlib.crc32(data))
    ranged = [s.headers for s in origin.seen if "Range" in s.headers]
    assert len(origin.seen) == 2 and ranged[0]["If-Range"] == '"strong1"'
    # Where the body broke depends on what the aborted connection had flushed.
    assert ranged[0]["Range"].startswith("bytes=") and ranged[0]["Range"].endswith("-")
