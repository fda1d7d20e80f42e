"""Live ingest at the origin: who may PUT what, uploads that break off are never served,
the first good copy of each segment is kept, playlists come from what was kept, and the
end of the event makes a VOD title."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from origin.content.app import SETTINGS_KEY, make_app
from origin.content.settings import OriginSettings
from tests.live_media import AUDIO, RENDITION, SLOT, av_event_doc, encode, encode_av, event_doc
from vcdn.httpserve.media import IMMUTABLE, VOD_PLAYLIST

TOKEN = "ingest-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TITLE = "ev"
pytestmark = pytest.mark.slow  # encodes its media once with ffmpeg


def settings(root: Path, **kw: object) -> OriginSettings:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    return OriginSettings(root=root, ingest_token_sha256=(digest,), live_grace=0.0, **kw)


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path) -> TestClient:
    return await aiohttp_client(make_app(settings(tmp_path)))


async def put(client: TestClient, path: str, body: bytes, **headers: str) -> int:
    async with client.put(f"/v/{TITLE}/{path}", data=body, headers={**AUTH, **headers}) as r:
        return r.status


async def start_event(client: TestClient, window: float = 60.0) -> None:
    assert await put(client, "live.json", json.dumps(event_doc(window)).encode()) == 201
    assert await put(client, f"{RENDITION}/init.mp4", encode().init) == 201
    assert await put(client, "master.m3u8", b"#EXTM3U\n") == 201


async def playlist(client: TestClient) -> tuple[str, str]:
    async with client.get(f"/v/{TITLE}/{RENDITION}/index.m3u8") as r:
        assert r.status == 200
        return await r.text(), r.headers["Cache-Control"]


def msns(text: str) -> list[int]:
    return [int(ln[4:-4]) for ln in text.splitlines() if ln.startswith("seg_")]


async def test_put_without_token_is_401_and_wrong_token_403(client: TestClient) -> None:
    async with client.put(f"/v/{TITLE}/live.json", data=b"{}") as r:
        assert r.status == 401
    bad = {"Authorization": "Bearer nope"}
    async with client.put(f"/v/{TITLE}/live.json", data=b"{}", headers=bad) as r:
        assert r.status == 403
    assert not (Path(client.server.app[SETTINGS_KEY].root) / TITLE).exists()


async def test_only_event_master_init_and_segments_may_be_put(client: TestClient) -> None:
    for path in (f"{RENDITION}/index.m3u8", "manifest.json", "x/../live.json", "a/b/c.m4s"):
        async with client.put(f"/v/{TITLE}/{path}", data=b"x", headers=AUTH) as r:
            assert r.status in (400, 403), path


async def test_segment_before_the_event_is_409(client: TestClient) -> None:
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", encode().segments[SLOT]) == 409


async def test_chunked_upload_is_411_and_oversized_413(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(make_app(settings(tmp_path, max_ingest_bytes=1000)))

    async def gen():
        yield b"{}"

    async with client.put(f"/v/{TITLE}/live.json", data=gen(), headers=AUTH) as r:
        assert r.status == 411
    assert await put(client, "live.json", b" " * 1001) == 413


async def test_live_event_playlist_is_built_from_kept_segments(client: TestClient) -> None:
    await start_event(client)
    media = encode()
    for msn in sorted(media.segments)[:3]:
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn]) == 201
    text, cc = await playlist(client)
    # Fresh until the next 1 s segment is due (kept just now: 1-2 s), then 3 s if need be.
    assert re.fullmatch(r"public, max-age=[12], stale-if-error=5", cc), cc
    assert msns(text) == [SLOT, SLOT + 1, SLOT + 2]
    assert f"#EXT-X-MEDIA-SEQUENCE:{SLOT}" in text
    # The shared epoch: MSN 1,000,000 of 1 s segments starts 1,000,000 s after 1970.
    assert "#EXT-X-PROGRAM-DATE-TIME:1970-01-12T13:46:40.000Z" in text
    assert "#EXT-X-ENDLIST" not in text
    async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == IMMUTABLE
        assert await r.read() == media.segments[SLOT]


async def test_first_good_copy_wins(client: TestClient) -> None:
    await start_event(client)
    a, b = encode("testsrc2"), encode("testsrc")
    assert a.segments[SLOT] != b.segments[SLOT]
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", a.segments[SLOT]) == 201
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", b.segments[SLOT]) == 200
    async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s") as r:
        assert await r.read() == a.segments[SLOT]
    # The other pipeline's next segment continues the same timeline: kept.
    assert await put(client, f"{RENDITION}/seg_{SLOT + 1}.m4s", b.segments[SLOT + 1]) == 201
    assert msns((await playlist(client))[0]) == [SLOT, SLOT + 1]


async def test_bad_copies_are_refused_and_the_good_one_then_kept(client: TestClient) -> None:
    await start_event(client)
    media = encode()
    seg = media.segments[SLOT]
    # Truncated (a pipeline dying mid-write), junk, or under another MSN's number.
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", seg[: len(seg) // 2]) == 422
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", b"\0" * 64) == 422
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", media.segments[SLOT + 3]) == 422
    async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s") as r:
        assert r.status == 404
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", seg) == 201


async def test_upload_that_breaks_off_is_never_served(client: TestClient) -> None:
    await start_event(client)
    seg = encode().segments[SLOT]
    _reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"PUT /v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(seg)}\r\n\r\n".encode()
        + seg[: len(seg) - 10]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()  # client gone before the last 10 bytes
    root = Path(client.server.app[SETTINGS_KEY].root)
    for _ in range(50):
        if not list((root / ".vcdn-ingest").glob(".put.*")):
            break
        await asyncio.sleep(0.05)
    assert list((root / ".vcdn-ingest").glob(".put.*")) == []
    async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s") as r:
        assert r.status == 404
    assert not (root / TITLE / RENDITION / "index.m3u8").exists()  # nothing announced
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", seg) == 201


async def test_window_slides_and_old_segments_go(client: TestClient) -> None:
    await start_event(client, window=2.0)
    media = encode()
    for msn in sorted(media.segments):
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn]) == 201
    text, _ = await playlist(client)
    assert msns(text) == [SLOT + 3, SLOT + 4]
    async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{SLOT}.m4s") as r:
        assert r.status == 404  # grace 0 in these settings


async def test_end_of_event_makes_a_vod_title(client: TestClient) -> None:
    await start_event(client)
    media = encode()
    for msn in sorted(media.segments):
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn]) == 201
    assert await put(client, "live.json", json.dumps(event_doc(ended=True)).encode()) == 200
    text, cc = await playlist(client)
    assert cc == VOD_PLAYLIST
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and len(msns(text)) == len(media.segments)
    async with client.get(f"/v/{TITLE}/manifest.json") as r:
        manifest = await r.json(content_type=None)
    paths = {f["path"] for f in manifest["files"]}
    assert f"{RENDITION}/seg_{SLOT}.m4s" in paths and "master.m3u8" in paths
    assert "live.json" not in paths
    assert manifest["duration"] == pytest.approx(len(media.segments), abs=0.1)
    assert await put(client, f"{RENDITION}/seg_{SLOT + 9}.m4s", b"x" * 10) == 409


async def test_restart_reloads_the_event_from_disk(aiohttp_client, tmp_path: Path) -> None:
    first = await aiohttp_client(make_app(settings(tmp_path)))
    await start_event(first)
    media = encode()
    assert await put(first, f"{RENDITION}/seg_{SLOT}.m4s", media.segments[SLOT]) == 201
    await first.close()
    again = await aiohttp_client(make_app(settings(tmp_path)))
    assert await put(again, f"{RENDITION}/seg_{SLOT}.m4s", media.segments[SLOT]) == 200
    assert await put(again, f"{RENDITION}/seg_{SLOT + 1}.m4s", media.segments[SLOT + 1]) == 201
    assert msns((await playlist(again))[0]) == [SLOT, SLOT + 1]


async def test_packaged_vod_title_cannot_become_live(aiohttp_client, store) -> None:
    root, _ = store
    client = await aiohttp_client(make_app(settings(root)))
    async with client.put("/v/t/live.json", data=json.dumps(event_doc()), headers=AUTH) as r:
        assert r.status == 409


async def test_the_next_segment_asked_early_is_waited_for_within_bounds(
    client: TestClient,
) -> None:
    """A request a moment ahead of the pipeline waits for the next segment; one further
    ahead is a 404 at once; the wait ends after 1.5 segment durations."""
    await start_event(client)
    media = encode()
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", media.segments[SLOT]) == 201
    loop = asyncio.get_running_loop()

    async def fetch(msn: int) -> tuple[int, bytes, float]:
        t0 = loop.time()
        async with client.get(f"/v/{TITLE}/{RENDITION}/seg_{msn}.m4s") as r:
            return r.status, await r.read(), loop.time() - t0

    async def publish_later() -> None:
        await asyncio.sleep(0.3)
        await put(client, f"{RENDITION}/seg_{SLOT + 1}.m4s", media.segments[SLOT + 1])

    (status, body, waited), _ = await asyncio.gather(fetch(SLOT + 1), publish_later())
    assert status == 200 and body == media.segments[SLOT + 1] and waited >= 0.25
    status, _, waited = await fetch(SLOT + 5)
    assert status == 404 and waited < 0.5
    status, _, waited = await fetch(SLOT + 2)  # nobody publishes it
    assert status == 404 and 1.3 <= waited < 5


async def test_a_cache_revalidating_the_newest_playlist_gets_the_next_version(
    client: TestClient,
) -> None:
    """An If-None-Match naming the current playlist waits for the next version (one
    upstream request per version, and the cache has it the moment it is written); an
    older ETag is answered at once; nobody publishing means a 304 within the bound. The
    lifetime counts the wait as age, so what was waited for is not stale on arrival."""
    await start_event(client)
    media = encode()
    assert await put(client, f"{RENDITION}/seg_{SLOT}.m4s", media.segments[SLOT]) == 201
    url = f"/v/{TITLE}/{RENDITION}/index.m3u8"
    async with client.get(url) as r:
        old = r.headers["ETag"]
    loop = asyncio.get_running_loop()

    async def revalidate(etag: str) -> tuple[int, str, str, float]:
        t0 = loop.time()
        async with client.get(url, headers={"If-None-Match": etag}) as r:
            return r.status, await r.text(), r.headers["Cache-Control"], loop.time() - t0

    async def publish_later() -> None:
        await asyncio.sleep(0.3)
        await put(client, f"{RENDITION}/seg_{SLOT + 1}.m4s", media.segments[SLOT + 1])

    (status, text, cc, waited), _ = await asyncio.gather(revalidate(old), publish_later())
    assert status == 200 and msns(text) == [SLOT, SLOT + 1] and waited >= 0.25
    max_age = int(re.search(r"max-age=(\d+)", cc).group(1))  # type: ignore[union-attr]
    assert max_age - waited > 0  # fresh for a while at a cache that counts the wait as age
    status, text, _, waited = await revalidate(old)  # an old version: the new one at once
    assert status == 200 and msns(text) == [SLOT, SLOT + 1] and waited < 0.25
    async with client.get(url) as r:
        current = r.headers["ETag"]
    status, _, _, waited = await revalidate(current)  # nobody publishes: 304, bounded
    assert status == 304 and waited < 2.0


async def test_a_dynamic_mpd_offers_the_kept_segments_and_turns_static_at_the_end(
    client: TestClient, tmp_path: Path
) -> None:
    """manifest.mpd beside the playlists: dynamic (epoch availabilityStartTime, window as
    timeShiftBufferDepth), $Number$ from the HLS media sequence over the same files, valid
    against the DASH schema and read by mpegdash; static with every segment at the end."""
    from mpegdash.parser import MPEGDASHParser

    from tests.packager.dashcheck import schema_errors

    await start_event(client)
    media = encode()
    for msn in sorted(media.segments)[:3]:
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn]) == 201

    async def mpd() -> tuple[str, object]:
        async with client.get(f"/v/{TITLE}/manifest.mpd") as r:
            assert r.status == 200 and r.content_type == "application/dash+xml"
            text = await r.text()
        assert schema_errors(text) == [], schema_errors(text)
        (tmp_path / "m.mpd").write_text(text)
        return text, MPEGDASHParser.parse(str(tmp_path / "m.mpd"))

    _, doc = await mpd()
    assert doc.type == "dynamic" and doc.availability_start_time == "1970-01-01T00:00:00Z"
    assert doc.minimum_update_period == "PT1.000S" and doc.time_shift_buffer_depth == "PT60.000S"
    assert doc.suggested_presentation_delay and doc.publish_time
    (rep,) = doc.periods[0].adaptation_sets[0].representations
    tmpl = rep.segment_templates[0]
    assert tmpl.start_number == SLOT and tmpl.media == f"{RENDITION}/seg_$Number$.m4s"
    assert tmpl.initialization == f"{RENDITION}/init.mp4"
    (s,) = tmpl.segment_timelines[0].Ss
    assert s.t == SLOT * 1000 and s.d == pytest.approx(1000, abs=40) and s.r == 2
    hls, _ = await playlist(client)
    assert f"#EXT-X-MEDIA-SEQUENCE:{SLOT}" in hls and len(msns(hls)) == 3  # the same three

    for msn in sorted(media.segments)[3:]:
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.segments[msn]) == 201
    assert await put(client, "live.json", json.dumps(event_doc(ended=True)).encode()) == 200
    _, doc = await mpd()
    assert doc.type == "static" and doc.availability_start_time is None
    tmpl = doc.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    assert tmpl.presentation_time_offset == SLOT * 1000
    assert sum(1 + (s.r or 0) for s in tmpl.segment_timelines[0].Ss) == len(media.segments)
    async with client.get(f"/v/{TITLE}/manifest.json") as r:
        files = {f["path"] for f in (await r.json(content_type=None))["files"]}
    assert "manifest.mpd" in files


async def test_an_event_with_sound_keeps_its_audio_rendition_and_the_mpd_an_audio_set(
    aiohttp_client, tmp_path: Path
) -> None:
    """The audio rendition is kept by the video's rules on the same numbers (an init
    without sound refused, segments before the init 409, first copy wins), has its own
    playlist, is the MPD's audio adaptation set (schema-valid, video Representations with
    their own codec and bandwidth), survives a restart and is in the VOD title."""
    from mpegdash.parser import MPEGDASHParser

    from tests.packager.dashcheck import schema_errors

    client = await aiohttp_client(make_app(settings(tmp_path)))
    media = encode_av()
    assert await put(client, "live.json", json.dumps(av_event_doc()).encode()) == 201
    assert await put(client, f"{RENDITION}/init.mp4", media.video.init) == 201
    assert await put(client, f"{AUDIO}/seg_{SLOT}.m4s", media.audio.segments[SLOT]) == 409
    assert await put(client, f"{AUDIO}/init.mp4", media.video.init) == 422  # no sound
    assert await put(client, f"{AUDIO}/init.mp4", media.audio.init) == 201
    # The video and audio renditions are cut on the same numbers.
    assert sorted(media.audio.segments) == sorted(media.video.segments)
    first = sorted(media.video.segments)[:3]
    for msn in first:
        assert await put(client, f"{RENDITION}/seg_{msn}.m4s", media.video.segments[msn]) == 201
        assert await put(client, f"{AUDIO}/seg_{msn}.m4s", media.audio.segments[msn]) == 201
    assert await put(client, f"{AUDIO}/seg_{SLOT}.m4s", media.audio.segments[SLOT]) == 200
    async with client.get(f"/v/{TITLE}/{AUDIO}/index.m3u8") as r:
        assert r.status == 200 and msns(await r.text()) == first

    async def mpd(c: TestClient) -> object:
        async with c.get(f"/v/{TITLE}/manifest.mpd") as r:
            text = await r.text()
        assert schema_errors(text) == [], schema_errors(text)
        (tmp_path / "m.mpd").write_text(text)
        return MPEGDASHParser.parse(str(tmp_path / "m.mpd"))

    doc = await mpd(client)
    assert doc.type == "dynamic"
    video, audio = doc.periods[0].adaptation_sets
    assert (video.content_type, audio.content_type) == ("video", "audio")
    (vrep,) = video.representations
    (arep,) = audio.representations
    assert vrep.codecs == "avc1.42c00b" and vrep.bandwidth == 200000
    assert arep.codecs == "mp4a.40.2" and arep.audio_sampling_rate == "48000"
    tmpl = arep.segment_templates[0]
    assert tmpl.start_number == SLOT and tmpl.media == f"{AUDIO}/seg_$Number$.m4s"
    assert tmpl.initialization == f"{AUDIO}/init.mp4"
    assert sum(1 + (s.r or 0) for s in tmpl.segment_timelines[0].Ss) == 3
    assert abs(tmpl.segment_timelines[0].Ss[0].t - SLOT * 1000) < 50  # within an AAC frame

    again = await aiohttp_client(make_app(settings(tmp_path)))  # a restart: from disk
    for msn in sorted(media.video.segments)[3:]:
        assert await put(again, f"{RENDITION}/seg_{msn}.m4s", media.video.segments[msn]) == 201
        assert await put(again, f"{AUDIO}/seg_{msn}.m4s", media.audio.segments[msn]) == 201
    ended = json.dumps(av_event_doc(ended=True)).encode()
    async with again.put(f"/v/{TITLE}/live.json", data=ended, headers=AUTH) as r:
        assert r.status == 200
    doc = await mpd(again)
    assert doc.type == "static" and len(doc.periods[0].adaptation_sets) == 2
    async with again.get(f"/v/{TITLE}/{AUDIO}/index.m3u8") as r:
        text = await r.text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and msns(text) == sorted(media.audio.segments)
    async with again.get(f"/v/{TITLE}/manifest.json") as r:
        files = {f["path"] for f in (await r.json(content_type=None))["files"]}
    assert {f"{AUDIO}/init.mp4", f"{AUDIO}/seg_{SLOT}.m4s", "manifest.mpd"} <= files


@pytest.mark.parametrize("name", [RENDITION, "../x", ""])
async def test_an_audio_rendition_needs_a_name_of_its_own(client: TestClient, name: str) -> None:
    """The audio's name is a directory like a rendition's: the same rules, and not one a
    video rendition already has (their segments would overwrite each other)."""
    doc = av_event_doc()
    doc["audio"] = {**doc["audio"], "name": name}  # type: ignore[dict-item]
    assert await put(client, "live.json", json.dumps(doc).encode()) == 400
    root = Path(client.server.app[SETTINGS_KEY].root)
    assert not (root / TITLE).exists()
