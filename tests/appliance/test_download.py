"""One verified download over real loopback HTTP: right bytes get their name; anything
else raises the right error and leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from appliance.download import fetch_verified
from appliance.pacing import TokenBucket
from onebox.procs import free_port
from tests.appliance.conftest import Served, blob, serve_app
from vcdn.errors import IntegrityError, UpstreamError, UpstreamStatus, UpstreamTimeout
from vcdn.schemas import FileEntry

DATA = blob(100_000, 5)
ENTRY = FileEntry("f.ts", len(DATA), hashlib.sha256(DATA).hexdigest())


async def handler(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    if kind == "good":
        return web.Response(body=DATA)
    if kind == "flipped":
        return web.Response(body=DATA[:-1] + bytes([DATA[-1] ^ 1]))
    if kind == "long":
        return web.Response(body=DATA + b"x")
    if kind == "short":
        return web.Response(body=DATA[:-10])
    if kind == "chunked-long":
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(DATA)
        await resp.write(b"more")
        return resp
    if kind == "stall":
        resp = web.StreamResponse(headers={"Content-Length": str(len(DATA))})
        await resp.prepare(request)
        await resp.write(DATA[:1000])
        await asyncio.sleep(5)
        return resp
    raise web.HTTPNotFound()


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    app = web.Application()
    app.router.add_get("/{kind}", handler)
    served = await serve_app(app)
    yield served
    await served.stop()


def leftovers(folder: Path, pattern: str = "*") -> list[Path]:
    return list(folder.rglob(pattern))


async def get(url: str, dest: Path, within: float = 2.0) -> int:
    async with aiohttp.ClientSession() as s:
        return await fetch_verified(s, url, dest, ENTRY, bucket=TokenBucket(rate=0),
                                    read_timeout=within)


async def test_matching_bytes_get_their_final_name(server: Served, tmp_path: Path) -> None:
    dest = tmp_path / "d" / "f.ts"
    assert await get(server.url + "/good", dest) == len(DATA)
    assert dest.read_bytes() == DATA
    assert not leftovers(tmp_path, "*.part")


@pytest.mark.parametrize("kind", ["flipped", "long", "short", "chunked-long"])
async def test_wrong_bytes_are_rejected_and_nothing_is_left(
    server: Served, tmp_path: Path, kind: str
) -> None:
    dest = tmp_path / "f.ts"
    with pytest.raises(IntegrityError):
        await get(f"{server.url}/{kind}", dest)
    assert leftovers(tmp_path) == []


async def test_error_status_is_an_upstream_status(server: Served, tmp_path: Path) -> None:
    with pytest.raises(UpstreamStatus) as err:
        await get(server.url + "/missing", tmp_path / "f.ts")
    assert err.value.status == 404 and leftovers(tmp_path) == []


async def test_unreachable_and_stalled_upstreams(server: Served, tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="failed"):
        await get(f"http://127.0.0.1:{free_port()}/good", tmp_path / "f.ts")
    with pytest.raises(UpstreamTimeout):
        await get(server.url + "/stall", tmp_path / "f.ts", within=0.3)
    assert leftovers(tmp_path) == []
