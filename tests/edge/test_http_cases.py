"""The shared range/conditional table (tests/http_cases.py) through the edge, in front of
the real origin: on a miss (streamed from the growing fill) and on a hit (from disk or
RAM), with aiohttp's client and with curl."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import require_tool
from tests.edge.conftest import TITLE, edge_of, signed
from tests.http_cases import CASES, EMPTY_CASES, Case, Resource, check

BIG = "v1/big.m4s"  # above the RAM-cache limit: hits use sendfile
SMALL = "v1/seg_00001.m4s"


@pytest.fixture
async def edge(origin: TestServer, origin_root: Path, make_edge) -> TestClient:  # type: ignore[no-untyped-def]
    (origin_root / TITLE / BIG).write_bytes(os.urandom(700_000))
    return await make_edge(str(origin.make_url("")).rstrip("/"))


async def _resource(edge: TestClient, path: str, data: bytes) -> Resource:
    async with edge.get(signed(path)) as resp:
        assert resp.status == 200
        assert await resp.read() == data
        return Resource(data, resp.headers["ETag"], resp.headers["Last-Modified"])


async def _fetch(
    edge: TestClient, case: Case, url: str, res: Resource
) -> tuple[int, dict[str, str], bytes]:
    async with edge.request(case.method, url, headers=case.request_headers(res)) as resp:
        body = await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


async def _purge(edge: TestClient) -> None:
    e = edge_of(edge)
    for _ in range(100):  # a previous fill may still be publishing
        if e.fills is not None and not e.fills._inflight:
            break
        await asyncio.sleep(0.01)
    e.store.purge(title=TITLE)


@pytest.mark.parametrize("path", [SMALL, BIG])
async def test_table_on_hits(edge: TestClient, origin_root: Path, path: str) -> None:
    """Every case answered from the cache matches the table."""
    data = (origin_root / TITLE / path).read_bytes()
    res = await _resource(edge, path, data)
    await _purge(edge)
    await _resource(edge, path, data)
    await asyncio.sleep(0.05)
    for case in CASES:
        status, headers, body = await _fetch(edge, case, signed(path), res)
        check(case, res, status, headers, body)
        if status in (200, 206, 304):
            assert headers.get("via", "").endswith("vcdn-edge")
            assert "age" in headers


@pytest.mark.parametrize("path", [SMALL, BIG])
async def test_table_on_misses(edge: TestClient, origin_root: Path, path: str) -> None:
    """Every case asked of a cold cache (the fill streams) matches the table."""
    data = (origin_root / TITLE / path).read_bytes()
    res = await _resource(edge, path, data)
    for case in CASES:
        await _purge(edge)
        status, headers, body = await _fetch(edge, case, signed(path), res)
        check(case, res, status, headers, body)


async def test_empty_object(edge: TestClient, origin_root: Path) -> None:
    """A zero-length object is stored and served like any other, hit or miss."""
    res = await _resource(edge, "empty.bin", b"")
    for case in EMPTY_CASES:
        await _purge(edge)
        check(case, res, *await _fetch(edge, case, signed("empty.bin"), res))
        check(case, res, *await _fetch(edge, case, signed("empty.bin"), res))


async def _curl(url: str, case: Case, res: Resource) -> tuple[int, dict[str, str], bytes]:
    curl = require_tool("curl")
    args = [curl, "-s", "-D", "-", "-o", "-", "--http1.1", "-X", case.method]
    if case.method == "HEAD":
        args = [curl, "-s", "-I", "--http1.1"]
    for k, v in case.request_headers(res).items():
        args += ["-H", f"{k}: {v}"]
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize("path", [SMALL, BIG])
async def test_table_with_curl(edge: TestClient, origin_root: Path, path: str) -> None:
    """The curl subset of the table, hit and miss, through a real socket."""
    data = (origin_root / TITLE / path).read_bytes()
    res = await _resource(edge, path, data)
    for case in [c for c in CASES if c.curl]:
        await _purge(edge)
        url = str(edge.make_url(signed(path)))
        check(case, res, *await _curl(url, case, res))  # miss
        await asyncio.sleep(0.02)
        check(case, res, *await _curl(url, case, res))  # hit
