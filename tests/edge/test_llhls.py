"""Low-latency HLS through an edge: the spec's server rules answer the same through it, a
crowd blocking on the next part costs the origin one request, the preload-hinted part
reaches every waiting player as its bytes arrive, and Age tells how old a cached answer is."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.edge.conftest import counting_origin, settle, signed
from tests.live_media import RENDITION, encode_ll
from tests.llhls_rules import PLAYLIST, ROWS, TOKEN, Row, S, check_row, publish, standard_state

pytestmark = pytest.mark.slow  # encodes its media once with ffmpeg
TITLE = "llev"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def setup(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_edge: Callable[..., Awaitable[TestClient]], tmp_path: Any,
) -> tuple[TestClient, TestClient, Counter[str]]:
    """(publisher at the origin, edge, origin GETs by path and query)."""
    root = tmp_path / "origin"
    root.mkdir()
    app, counts = counting_origin(root, TOKEN, TITLE)
    server = await aiohttp_server(app)
    publisher = await aiohttp_client(server)
    edge = await make_edge(str(server.make_url("")).rstrip("/"))
    return publisher, edge, counts


def putter(client: TestClient):
    async def put(path: str, body: bytes) -> int:
        async with client.put(f"/v/{TITLE}/{path}", data=body, headers=AUTH) as r:
            return r.status
    return put


def getter(edge: TestClient):
    async def get(path: str) -> tuple[int, bytes, dict[str, str]]:
        async with edge.get(signed(path, TITLE)) as r:
            return r.status, await r.read(), dict(r.headers)
    return get


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_server_rules_through_an_edge(
    aiohttp_server, aiohttp_client, make_edge, tmp_path, row: Row
) -> None:
    publisher, edge, _ = await setup(aiohttp_server, aiohttp_client, make_edge, tmp_path)
    media = encode_ll()
    put = putter(publisher)
    await standard_state(put, media)
    await check_row(row, getter(edge), put, media)


async def test_a_crowd_blocking_on_the_next_part_costs_one_origin_request(
    aiohttp_server, aiohttp_client, make_edge, tmp_path
) -> None:
    publisher, edge, counts = await setup(aiohttp_server, aiohttp_client, make_edge, tmp_path)
    media = encode_ll()
    put = putter(publisher)
    await standard_state(put, media)
    get = getter(edge)
    query = f"_HLS_msn={S + 9}&_HLS_part=2"
    spellings = [query, f"_HLS_part=2&_HLS_msn={S + 9}", f"{query}&bust=7"]
    waiting = [asyncio.create_task(get(f"{PLAYLIST}?{spellings[i % 3]}")) for i in range(120)]
    await asyncio.sleep(0.4)
    assert not any(t.done() for t in waiting)
    await publish(put, media, S + 9, range(2, 3), segment=False)
    loop = asyncio.get_running_loop()
    published = loop.time()
    answers = await asyncio.gather(*waiting)
    assert loop.time() - published < 2.0
    assert {a[0] for a in answers} == {200}
    assert all(f"part_{S + 9}_2.m4s" in a[1].decode() for a in answers)
    assert len({a[1] for a in answers}) == 1
    assert counts[f"{PLAYLIST}?{query}"] == 1, counts
    assert sum(n for k, n in counts.items() if k.startswith(PLAYLIST)) == 1, counts
    await settle(edge.server.app)
    # A late player is answered from the cache, with an Age that counts the time since.
    await asyncio.sleep(1.2)
    status, body, headers = await get(f"{PLAYLIST}?{query}")
    assert status == 200 and body == answers[0][1]
    assert 1 <= int(headers["Age"]) <= 3, headers
    assert headers["Cache-Control"] == "public, max-age=6"
    assert counts[f"{PLAYLIST}?{query}"] == 1


async def test_a_crowd_refused_after_three_target_durations_costs_one_origin_request(
    aiohttp_server, aiohttp_client, make_edge, tmp_path
) -> None:
    publisher, edge, counts = await setup(aiohttp_server, aiohttp_client, make_edge, tmp_path)
    media = encode_ll()
    await standard_state(putter(publisher), media)
    get = getter(edge)
    query = f"_HLS_msn={S + 11}"
    answers = await asyncio.gather(*(get(f"{PLAYLIST}?{query}") for _ in range(40)))
    assert {a[0] for a in answers} == {503}
    assert counts[f"{PLAYLIST}?{query}"] == 1, counts


async def test_the_hinted_part_streams_to_every_waiting_player(
    aiohttp_server, aiohttp_client, make_edge, tmp_path
) -> None:
    publisher, edge, counts = await setup(aiohttp_server, aiohttp_client, make_edge, tmp_path)
    media = encode_ll()
    put = putter(publisher)
    await standard_state(put, media)
    body = media.parts[S + 9][2]
    half = len(body) // 2
    path = f"{RENDITION}/part_{S + 9}_2.m4s"
    loop = asyncio.get_running_loop()
    firsts: list[float] = []

    async def player() -> bytes:
        async with edge.get(signed(path, TITLE)) as r:
            assert r.status == 200
            data = b""
            async for chunk in r.content.iter_any():
                if not data:
                    firsts.append(loop.time())
                data += chunk
            return data

    players = [asyncio.create_task(player()) for _ in range(30)]
    await asyncio.sleep(0.3)
    second = 0.0

    async def chunks():
        nonlocal second
        yield body[:half]
        await asyncio.sleep(0.6)
        second = loop.time()
        yield body[half:]

    async with publisher.put(f"/v/{TITLE}/{path}", data=chunks(), headers=AUTH) as r:
        assert r.status == 201
    got = await asyncio.wait_for(asyncio.gather(*players), 10)
    assert all(g == body for g in got)
    assert len(firsts) == 30 and max(firsts) < second, "players waited for the whole part"
    assert counts[path] == 1
