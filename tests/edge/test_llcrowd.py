"""A crowd of players blocking on the same LL-HLS playlist request, behind a real edge
listener (hit fast path and request hook installed, as `vcdn edge` runs): one upstream
request, one serialised answer for the whole crowd, the same bytes to every player."""

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
) -> AsyncIterator[tuple[str, str, Counter[str], web.Application]]:
    """(origin URL, edge URL, origin GETs by path and query, the edge app)."""
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
    settings = edge_settings(tmp_path, origin_url, port=0)
    app = make_app(settings)
    runner, url = await start_edge(app, settings)
    try:
        yield origin_url, url, counts, app
    finally:
        await runner.cleanup()


async def test_a_blocking_crowd_gets_one_rendering_and_one_upstream_request(ll: Any) -> None:
    origin_url, url, counts, app = ll
    media = encode_ll()
    connector = aiohttp.TCPConnector(limit=0)  # one connection per player
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(path: str, body: bytes) -> int:
            async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=body,
                                   headers=AUTH) as r:
                return r.status

        async def get(path: str) -> tuple[int, bytes, str]:
            async with session.get(url + signed(path, TITLE)) as r:
                return r.status, await r.read(), r.headers.get("Cache-Status", "")

        await standard_state(put, media)
        query = f"_HLS_msn={S + 9}&_HLS_part=2"
        # The first request starts the fill; the rest find it in flight and join it.
        first = asyncio.create_task(get(f"{PLAYLIST}?{query}"))
        await asyncio.sleep(0.2)
        waiting = [asyncio.create_task(get(f"{PLAYLIST}?{query}")) for _ in range(CROWD - 1)]
        await asyncio.sleep(0.3)
        assert not first.done() and not any(t.done() for t in waiting)
        await publish(put, media, S + 9, range(2, 3), segment=False)
        answers = await asyncio.wait_for(asyncio.gather(first, *waiting), 10)
    edge = app[EDGE_KEY]
    await settle(app)
    assert {a[0] for a in answers} == {200}
    assert len({a[1] for a in answers}) == 1 and f"part_{S + 9}_2.m4s" in answers[0][1].decode()
    assert counts[f"{PLAYLIST}?{query}"] == 1, counts
    # Everyone who joined the fill in flight was answered from one serialisation.
    assert edge.crowds.renders == 1
    assert edge.crowds.answered == CROWD - 1
    assert sum("collapsed" in a[2] for a in answers) == CROWD - 1
