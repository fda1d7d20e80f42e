"""A crowd of players blocking on the same LL-HLS playlist request, behind real edge
listeners (hit fast path and request hook installed, as `vcdn edge` runs): one upstream
request, one serialised answer per worker for the whole crowd, the same bytes to every
player. Two edges on one cache directory are two workers of one appliance."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge.app import EDGE_KEY, make_app
from edge.workers import start_edge
from origin.content.app import make_app as make_origin_app
from origin.content.settings import OriginSettings
from tests.edge.conftest import edge_settings, settle, signed
from tests.live_media import encode_ll
from tests.llhls_rules import PLAYLIST, TOKEN, S, publish, standard_state

pytestmark = pytest.mark.slow  # encodes its media once with ffmpeg
TITLE = "llev"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CROWD = 60


@pytest.fixture
async def ll(
    aiohttp_server: Any, tmp_path: Path
) -> AsyncIterator[tuple[str, list[str], Counter[str], list[web.Application]]]:
    """(origin URL, two edge workers' URLs, origin GETs by path and query, their apps)."""
    root = tmp_path / "origin"
    root.mkdir()
    counts: Counter[str] = Counter()
    origin_app = make_origin_app(OriginSettings(
        root=root, ingest_token_sha256=(hashlib.sha256(TOKEN.encode()).hexdigest(),),
    ))

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET":
            counts[request.path_qs.removeprefix(f"/v/{TITLE}/")] += 1
        return await handler(request)

    origin_app.middlewares.insert(0, count)
    origin = await aiohttp_server(origin_app)
    origin_url = str(origin.make_url("")).rstrip("/")
    settings = edge_settings(tmp_path, origin_url, port=0)  # one cache directory for both
    apps = [make_app(settings), make_app(settings)]
    started = [await start_edge(app, settings) for app in apps]
    try:
        yield origin_url, [url for _, url in started], counts, apps
    finally:
        for runner, _ in started:
            await runner.cleanup()


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_blocking_crowd_gets_one_rendering_and_one_upstream_request(
    ll: Any, workers: int
) -> None:
    origin_url, urls, counts, apps = ll
    media = encode_ll()
    connector = aiohttp.TCPConnector(limit=0)  # one connection per player
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(path: str, body: bytes) -> int:
            async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=body,
                                   headers=AUTH) as r:
                return r.status

        async def get(i: int, path: str) -> tuple[int, bytes, str]:
            async with session.get(urls[i % workers] + signed(path, TITLE)) as r:
                return r.status, await r.read(), r.headers.get("Cache-Status", "")

        await standard_state(put, media)
        query = f"_HLS_msn={S + 9}&_HLS_part=2"
        # The first request of each worker starts its fill (the second worker's follows
        # the first's); the rest find it in flight and join it.
        firsts = [asyncio.create_task(get(i, f"{PLAYLIST}?{query}")) for i in range(workers)]
        await asyncio.sleep(0.2)
        waiting = [asyncio.create_task(get(i, f"{PLAYLIST}?{query}"))
                   for i in range(CROWD - workers)]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in (*firsts, *waiting))
        await publish(put, media, S + 9, range(2, 3), segment=False)
        answers = await asyncio.wait_for(asyncio.gather(*firsts, *waiting), 10)
    for app in apps:
        await settle(app)
    assert {a[0] for a in answers} == {200}
    assert len({a[1] for a in answers}) == 1 and f"part_{S + 9}_2.m4s" in answers[0][1].decode()
    assert counts[f"{PLAYLIST}?{query}"] == 1, counts
    # Everyone who joined a fill in flight was answered from one serialisation per worker.
    crowds = [app[EDGE_KEY].crowds for app in apps[:workers]]
    assert [c.renders for c in crowds] == [1] * workers
    assert sum(c.answered for c in crowds) == CROWD - workers
    assert sum("collapsed" in a[2] for a in answers) == CROWD - workers
