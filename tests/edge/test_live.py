"""A live event through an edge: the origin's live Cache-Control keeps playlists fresh,
a crowd on a new segment costs one origin request, and stale-if-error carries players
through a short origin outage."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.edge.conftest import counting_origin, settle, signed
from tests.live_media import RENDITION, SLOT, encode, event_doc

pytestmark = pytest.mark.slow  # encodes its media once with ffmpeg
TOKEN = "edge-live-token"
TITLE = "ev"
PLAYLIST = f"{RENDITION}/index.m3u8"


async def live_origin(
    aiohttp_server: Callable[..., Awaitable[TestServer]], root: Any
) -> tuple[TestServer, Counter[str]]:
    app, counts = counting_origin(root, TOKEN, TITLE, with_query=False)
    return await aiohttp_server(app), counts


async def put(client: TestClient, path: str, body: bytes) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with client.put(f"/v/{TITLE}/{path}", data=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()


async def test_live_event_through_an_edge(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_edge: Callable[..., Awaitable[TestClient]],
    tmp_path: Any,
) -> None:
    root = tmp_path / "origin"
    root.mkdir()
    server, counts = await live_origin(aiohttp_server, root)
    publisher = await aiohttp_client(server)
    media = encode()
    await put(publisher, "live.json", json.dumps(event_doc()).encode())
    await put(publisher, f"{RENDITION}/init.mp4", media.init)
    for msn in (SLOT, SLOT + 1):
        await put(publisher, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn])
    edge = await make_edge(str(server.make_url("")).rstrip("/"))

    async def get(path: str) -> tuple[int, bytes, str]:
        async with edge.get(signed(path, TITLE)) as resp:
            return resp.status, await resp.read(), resp.headers.get("Cache-Control", "")

    # 50 players ask for the playlist at once: one origin request, short freshness.
    answers = await asyncio.gather(*(get(PLAYLIST) for _ in range(50)))
    assert {a[0] for a in answers} == {200}
    assert re.search(r"max-age=[12],", answers[0][2])  # until the next 1 s segment is due
    assert counts[PLAYLIST] == 1
    await settle(edge.server.app)

    # A new segment appears: the playlist is refetched once it is stale, never served
    # staler than max-age, and a crowd on the new segment costs one origin request.
    await put(publisher, f"{RENDITION}/seg_{SLOT + 2}.m4s", media.segments[SLOT + 2])
    for _ in range(40):
        status, body, _ = await get(PLAYLIST)
        if f"seg_{SLOT + 2}.m4s".encode() in body:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the edge kept serving a playlist past its freshness")
    seg = f"{RENDITION}/seg_{SLOT + 2}.m4s"
    answers = await asyncio.gather(*(get(seg) for _ in range(50)))
    assert {a[0] for a in answers} == {200} and {a[1] for a in answers} == {
        media.segments[SLOT + 2]
    }
    assert counts[seg] == 1
    await settle(edge.server.app)

    # The origin goes away for a moment: the stale playlist stands in (stale-if-error=3).
    await publisher.close()
    await server.close()
    await asyncio.sleep(2.6)  # past max-age (at most 2), within max-age + stale-if-error
    status, body, _ = await get(PLAYLIST)
    assert status == 200 and f"seg_{SLOT + 2}.m4s".encode() in body
