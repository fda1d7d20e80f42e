"""A crowd of players blocking on the same LL-HLS playlist request, behind real edge
listeners (hit fast path and request hook installed, as `vcdn edge` runs): one upstream
request, one serialised answer per worker for the whole crowd, the same bytes to every
player. Two edges on one cache directory are two workers of one appliance."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from edge.app import EDGE_KEY, make_app
from edge.workers import start_edge
from tests.edge.conftest import counting_origin, edge_settings, settle, signed
from tests.live_media import RENDITION, encode_ll
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
    origin_app, counts = counting_origin(root, TOKEN, TITLE)
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


async def test_the_hinted_part_streams_to_its_crowd_from_one_head(ll: Any) -> None:
    origin_url, urls, counts, apps = ll
    media = encode_ll()
    body = media.parts[S + 9][2]
    half = len(body) // 2
    path = f"{RENDITION}/part_{S + 9}_2.m4s"
    loop = asyncio.get_running_loop()
    firsts: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(path: str, body: bytes) -> int:
            async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=body,
                                   headers=AUTH) as r:
                return r.status

        async def player() -> tuple[bytes, str]:
            async with session.get(urls[0] + signed(path, TITLE)) as r:
                assert r.status == 200
                data = b""
                async for piece in r.content.iter_any():
                    if not data:
                        firsts.append(loop.time())
                    data += piece
                return data, r.headers.get("Cache-Status", "")

        await standard_state(put, media)
        # The first asks before the part starts (it starts the fill); the rest join it.
        players = [asyncio.create_task(player())]
        await asyncio.sleep(0.2)
        players += [asyncio.create_task(player()) for _ in range(CROWD - 1)]
        await asyncio.sleep(0.3)
        second = 0.0

        async def pieces() -> AsyncIterator[bytes]:
            nonlocal second
            yield body[:half]
            await asyncio.sleep(0.6)
            second = loop.time()
            yield body[half:]

        async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=pieces(),
                               headers=AUTH) as r:
            assert r.status == 201
        got = await asyncio.wait_for(asyncio.gather(*players), 10)
    assert all(g[0] == body for g in got)
    assert len(firsts) == CROWD and max(firsts) < second, "players waited for the whole part"
    assert counts[path] == 1
    crowds = apps[0][EDGE_KEY].crowds
    assert crowds.renders == 1 and crowds.answered == CROWD - 1
    assert sum("collapsed" in g[1] for g in got) == CROWD - 1


async def test_a_part_that_fails_cuts_its_whole_crowd_off(ll: Any) -> None:
    origin_url, urls, _, apps = ll
    media = encode_ll()
    bogus = bytes(4000)  # not a box: the origin refuses it once whole and cuts its readers
    path = f"{RENDITION}/part_{S + 9}_2.m4s"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def put(path: str, body: bytes) -> int:
            async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=body,
                                   headers=AUTH) as r:
                return r.status

        async def player() -> str:
            try:
                async with session.get(urls[0] + signed(path, TITLE)) as r:
                    await r.read()
                    return f"whole {r.status}"
            except aiohttp.ClientError as exc:
                return type(exc).__name__

        await standard_state(put, media)
        players = [asyncio.create_task(player())]
        await asyncio.sleep(0.2)
        players += [asyncio.create_task(player()) for _ in range(19)]
        await asyncio.sleep(0.3)

        async def pieces() -> AsyncIterator[bytes]:
            yield bogus[:2000]
            await asyncio.sleep(0.3)
            yield bogus[2000:]

        async with session.put(f"{origin_url}/v/{TITLE}/{path}", data=pieces(),
                               headers=AUTH) as r:
            assert r.status == 422
        outcomes = await asyncio.wait_for(asyncio.gather(*players), 10)
    assert not any(o.startswith("whole 200") for o in outcomes), outcomes
    assert apps[0][EDGE_KEY].crowds.renders == 1
