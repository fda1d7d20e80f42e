"""Fixtures for the edge: a real origin on loopback, edges in front of it, signed URLs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from edge.app import EDGE_KEY, Edge, make_app
from edge.settings import EdgeSettings
from origin.content.app import make_app as make_origin_app
from origin.content.settings import OriginSettings
from vcdn import tokens
from vcdn.httplimits import install as install_limits

KEYS = "k1:0123456789abcdef-secret,k0:old-key-still-accepted"
KEY_ID, KEY = "k1", b"0123456789abcdef-secret"
TITLE = "demo"


def sign(
    title: str = TITLE, *, expires: float | None = None, key_id: str = KEY_ID, key: bytes = KEY
) -> str:
    return tokens.sign(
        title,
        key_id=key_id,
        key=key,
        expires=int(expires if expires is not None else time.time() + 3600),
    )


def signed(path: str, title: str = TITLE) -> str:
    return f"/s/{sign(title)}/{title}/{path}"


@pytest.fixture
def origin_root(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    (root / TITLE / "v1").mkdir(parents=True)
    data = os.urandom(100_000)
    (root / TITLE / "v1" / "seg_00001.m4s").write_bytes(data)
    (root / TITLE / "v1" / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
    )
    (root / TITLE / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture
async def origin(
    aiohttp_server: Callable[..., Awaitable[TestServer]], origin_root: Path
) -> TestServer:
    return await aiohttp_server(make_origin_app(OriginSettings(root=origin_root)))


def edge_settings(tmp_path: Path, upstream: str, **kw: Any) -> EdgeSettings:
    base: dict[str, Any] = {
        "cache_dir": tmp_path / "cache",
        "upstream": upstream,
        "capacity": 64 * 1024**2,
        "signing_keys": KEYS,
        "retries": 1,
        "connect_timeout": 1.0,
        "read_timeout": 5.0,
    }
    base.update(kw)
    return EdgeSettings(**base)


@pytest.fixture
def make_edge(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> Callable[..., Awaitable[TestClient]]:
    async def make(upstream: str, **kw: Any) -> TestClient:
        settings = edge_settings(tmp_path, upstream, **kw)
        store_dir = settings.cache_dir
        store_dir.mkdir(parents=True, exist_ok=True)
        client = await aiohttp_client(make_app(settings))
        # The listener limits, as every vcdn runner installs them (before any connection).
        install_limits(client.server.runner.server, settings.http_limits())
        return client

    return make


def edge_of(client: TestClient) -> Edge:
    app: web.Application = client.server.app  # type: ignore[assignment]
    return app[EDGE_KEY]


async def settle(app: web.Application) -> None:
    """Wait (5 s at most) until the edge has no fill in flight (the last one published), so
    that the next request is a hit or a new fill, never a join of the previous one."""
    edge = app[EDGE_KEY]
    for _ in range(1000):
        if edge.fills is None or not edge.fills._inflight:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("a fill is still in flight after 5 s")


def counting_origin(
    root: Path, token: str, title: str, *, with_query: bool = True
) -> tuple[web.Application, Counter[str]]:
    """An origin taking `token`'s PUTs under `root`, and the GETs of `title` it has
    answered, by path (and query, for the LL-HLS directives): what the edges asked of it."""
    counts: Counter[str] = Counter()
    app = make_origin_app(OriginSettings(
        root=root, ingest_token_sha256=(hashlib.sha256(token.encode()).hexdigest(),),
    ))

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET":
            key = request.path_qs if with_query else request.path
            counts[key.removeprefix(f"/v/{title}/")] += 1
        return await handler(request)

    app.middlewares.insert(0, count)
    return app, counts
