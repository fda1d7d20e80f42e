"""Low-latency HLS at the origin: the spec's server rules as a table, parts streamed to
readers while they are written, and hostile part uploads."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from aiohttp import ClientPayloadError
from aiohttp.test_utils import TestClient

from origin.content.app import make_app
from origin.content.settings import OriginSettings
from tests.live_media import RENDITION, encode_ll
from tests.llhls_rules import (
    PLAYLIST,
    ROWS,
    TOKEN,
    Row,
    S,
    check_row,
    event_document,
    publish,
    standard_state,
)

pytestmark = pytest.mark.slow  # encodes its media once with ffmpeg
TITLE = "llev"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path) -> TestClient:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = OriginSettings(root=tmp_path, ingest_token_sha256=(digest,), live_grace=0.0,
                              max_ingest_bytes=1024 * 1024)
    return await aiohttp_client(make_app(settings))


def putter(client: TestClient):
    async def put(path: str, body: bytes, **headers: str) -> int:
        async with client.put(f"/v/{TITLE}/{path}", data=body,
                              headers={**AUTH, **headers}) as r:
            return r.status
    return put


def getter(client: TestClient):
    async def get(path: str) -> tuple[int, bytes, dict[str, str]]:
        async with client.get(f"/v/{TITLE}/{path}") as r:
            return r.status, await r.read(), dict(r.headers)
    return get


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_server_rules_at_the_origin(client: TestClient, row: Row) -> None:
    media = encode_ll()
    put = putter(client)
    await standard_state(put, media)
    await check_row(row, getter(client), put, media)


async def test_directives_are_ignored_once_the_playlist_has_endlist(client: TestClient) -> None:
    media = encode_ll()
    put = putter(client)
    await standard_state(put, media)
    await publish(put, media, S + 9, range(2, 3))
    ended = event_document().replace(b'"ended": false', b'"ended": true')
    assert await put("live.json", ended) == 200
    for query in (f"_HLS_msn={S + 30}&_HLS_part=2", "_HLS_part=1", "_HLS_skip=YES"):
        async with client.get(f"/v/{TITLE}/{PLAYLIST}?{query}") as r:
            text = await r.text()
            assert r.status == 200 and "#EXT-X-ENDLIST" in text, (query, text)
            assert "EXT-X-PART" not in text


async def test_a_hinted_part_streams_to_readers_as_it_is_written(client: TestClient) -> None:
    """A reader asks for the preload-hinted part before it exists; the pipeline then
    sends it in two halves with a pause: the reader has the first half before the
    second is sent, and the whole part at the end."""
    media = encode_ll()
    put = putter(client)
    await standard_state(put, media)
    body = media.parts[S + 9][2]
    half = len(body) // 2
    got: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()

    async def read() -> bytes:
        async with client.get(f"/v/{TITLE}/{RENDITION}/part_{S + 9}_2.m4s") as r:
            assert r.status == 200
            assert r.headers.get("Transfer-Encoding") == "chunked"
            data = b""
            async for chunk in r.content.iter_any():
                data += chunk
                got.append((loop.time(), len(data)))
            return data

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.2)
    assert not reader.done()
    second_sent = asyncio.Event()

    async def chunks():
        yield body[:half]
        await asyncio.sleep(0.5)
        second_sent.set()
        yield body[half:]

    async with client.put(f"/v/{TITLE}/{RENDITION}/part_{S + 9}_2.m4s", data=chunks(),
                          headers=AUTH) as r:
        assert r.status == 201, await r.text()
    data = await asyncio.wait_for(reader, 5)
    assert data == body
    assert got[0][1] >= half and got[0][0] < loop.time() - 0.4, "the first half came late"


async def test_a_part_that_breaks_off_aborts_its_readers(client: TestClient) -> None:
    media = encode_ll()
    put = putter(client)
    await standard_state(put, media)
    body = media.parts[S + 9][2]

    async def read() -> bytes:
        async with client.get(f"/v/{TITLE}/{RENDITION}/part_{S + 9}_2.m4s") as r:
            return await r.read()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.1)

    async def chunks():
        yield body[: len(body) // 2]
        await asyncio.sleep(0.3)  # the reader has the first half by now
        yield b"\x00\x00\x00\x10junk" + bytes(8)  # then garbage: the part fails its check

    async with client.put(f"/v/{TITLE}/{RENDITION}/part_{S + 9}_2.m4s", data=chunks(),
                          headers=AUTH) as r:
        assert r.status == 422, await r.text()
    with pytest.raises(ClientPayloadError):
        await asyncio.wait_for(reader, 5)
    # The part is not listed, and the next upload of it is accepted.
    async with client.get(f"/v/{TITLE}/{PLAYLIST}") as r:
        assert f"part_{S + 9}_2.m4s" not in (await r.text()).split("PRELOAD-HINT")[0]
    assert await put(f"{RENDITION}/part_{S + 9}_2.m4s", body) == 201


async def test_hostile_part_uploads(client: TestClient) -> None:
    media = encode_ll()
    put = putter(client)
    await standard_state(put, media)
    part = media.parts[S + 9][2]
    async with client.put(f"/v/{TITLE}/{RENDITION}/part_{S + 9}_2.m4s", data=part) as r:
        assert r.status == 401
    # Out of order, before part 0, of a kept segment, a non-keyframe part 0, a part too
    # long: each refused with a reason, nothing listed.
    assert await put(f"{RENDITION}/part_{S + 9}_3.m4s", part) == 409
    assert await put(f"{RENDITION}/part_{S + 10}_1.m4s", part) == 409
    assert await put(f"{RENDITION}/part_{S + 8}_0.m4s", media.parts[S + 8][0]) == 409
    assert await put(f"{RENDITION}/part_{S + 10}_0.m4s", media.parts[S + 9][1]) == 422
    assert await put(f"{RENDITION}/part_{S + 9}_2.m4s", media.segments[S + 9]) == 422
    assert await put(f"{RENDITION}/part_{S + 9}_2.m4s", b"not a part") == 422
    assert await put(f"{RENDITION}/part_x_2.m4s", part) == 403
    # Another pipeline's parts of a segment this one owns are not mixed in.
    assert await put(f"{RENDITION}/part_{S + 9}_2.m4s", part, **{"Vcdn-Pipeline": "b"}) == 200
    async with client.get(f"/v/{TITLE}/{PLAYLIST}") as r:
        text = await r.text()
    assert f"part_{S + 9}_2.m4s" not in text.split("PRELOAD-HINT")[0]
    assert f"part_{S + 10}_0" not in text
    # A part bigger than the ingest limit.
    assert await put(f"{RENDITION}/part_{S + 9}_2.m4s", bytes(2 * 1024 * 1024)) == 413
