"""The failover HLS client against real HTTP servers on loopback (in-process fakes)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from onebox.hlsclient import FailoverClient, base_of, choose_variant, resolve
from vcdn.errors import ClientError
from vcdn.hlsplaylist import parse_master

MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000\nlow/index.m3u8\n" \
         "#EXT-X-STREAM-INF:BANDWIDTH=900000\nhigh/index.m3u8\n"
MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MAP:URI=\"init.mp4\"\n" + "".join(
    f"#EXTINF:1,\nseg_{i}.m4s\n" for i in range(1, 4)
) + "#EXT-X-ENDLIST\n"
FILES = {
    "master.m3u8": MASTER.encode(),
    "high/index.m3u8": MEDIA.encode(),
    "low/index.m3u8": MEDIA.encode(),
    **{f"{r}/init.mp4": f"init-{r}".encode() for r in ("high", "low")},
    **{f"{r}/seg_{i}.m4s": f"{r}-{i}".encode() * 100 for r in ("high", "low") for i in (1, 2, 3)},
}
SHA = {p: hashlib.sha256(b).hexdigest() for p, b in FILES.items()}


def make_app(*, broken: set[str] = frozenset(), corrupt: bool = False) -> web.Application:
    """A stand-in appliance: /s/{token}/t1/{path}; `broken` paths answer 500."""

    async def handler(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if path in broken or path not in FILES:
            return web.Response(status=500 if path in broken else 404)
        body = FILES[path]
        return web.Response(body=body[::-1] if corrupt and path.endswith(".m4s") else body)

    app = web.Application()
    app.router.add_get("/s/{token}/t1/{path:.+}", handler)
    return app


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/s/tok/t1/master.m3u8"


def test_paths_resolve_below_the_title() -> None:
    assert base_of("http://h:1/s/T/t1/master.m3u8") == "http://h:1/s/T/t1/"
    assert resolve("master.m3u8", "720p/index.m3u8") == "720p/index.m3u8"
    assert resolve("720p/index.m3u8", "seg_1.m4s") == "720p/seg_1.m4s"
    assert resolve("720p/index.m3u8", "../audio/a.m4s") == "audio/a.m4s"
    assert resolve("720p/index.m3u8", "http://x/y.m4s") == "http://x/y.m4s"


def test_variants_are_chosen_by_index_or_name_and_bad_choices_say_what_exists() -> None:
    variants = parse_master(MASTER)
    assert choose_variant(variants, None).uri == "high/index.m3u8"
    assert choose_variant(variants, "low").uri == "low/index.m3u8"
    assert choose_variant(variants, -1).uri == "low/index.m3u8"
    with pytest.raises(ClientError, match="high, low"):
        choose_variant(variants, "4k")
    with pytest.raises(ClientError, match="out of range"):
        choose_variant(variants, 5)


async def test_a_refused_first_url_fails_over_and_every_byte_matches_the_manifest() -> None:
    async with TestServer(make_app(), host="127.0.0.1") as good, aiohttp.ClientSession() as s:
        client = FailoverClient(s, [url(closed_port()), url(good.port)], expected=SHA)
        report = await client.play("low")
        good_port = good.port
    assert report.ok and report.variant == "low"
    assert [f.path for f in report.segments] == ["low/init.mp4"] + [
        f"low/seg_{i}.m4s" for i in (1, 2, 3)
    ]
    assert all(f.sha256 == SHA[f.path] for f in report.fetches)
    assert report.failovers == 1  # sticky: after moving on, it stays on the good URL
    assert set(report.bytes_by_server) == {f"127.0.0.1:{good_port}"}


async def test_a_server_error_or_corrupt_bytes_move_that_segment_to_the_next_url() -> None:
    bad = make_app(broken={"high/seg_2.m4s"})
    async with TestServer(bad, host="127.0.0.1") as one, TestServer(
        make_app(corrupt=True), host="127.0.0.1"
    ) as two, TestServer(make_app(), host="127.0.0.1") as three, aiohttp.ClientSession() as s:
        client = FailoverClient(s, [url(one.port), url(two.port), url(three.port)], expected=SHA)
        report = await client.play()
        ports = one.port, three.port
    assert report.ok
    by_path = {f.path: f for f in report.fetches}
    assert by_path["high/seg_1.m4s"].server.endswith(str(ports[0]))
    assert by_path["high/seg_2.m4s"].server.endswith(str(ports[1]))
    assert by_path["high/seg_2.m4s"].attempts == 3
    assert report.failovers == 2 and report.worst_stall > 0


async def test_when_every_url_fails_the_client_asks_for_fresh_urls() -> None:
    async with TestServer(make_app(), host="127.0.0.1") as good, aiohttp.ClientSession() as s:
        asked = []

        async def refresh() -> list[str]:
            asked.append(1)
            return [url(good.port)]

        client = FailoverClient(s, [url(closed_port())], refresh=refresh, rounds=2)
        report = await client.play()
    assert report.ok and asked == [1]


async def test_a_path_no_url_delivers_is_reported_failed_not_raised() -> None:
    async with TestServer(make_app(broken={"high/seg_3.m4s"}), host="127.0.0.1") as one, \
            aiohttp.ClientSession() as s:
        client = FailoverClient(s, [url(one.port)], rounds=1)
        report = await client.play()
    assert not report.ok
    assert report.failed == ["high/seg_3.m4s"]
    assert "500" in report.errors[0]


MEDIA_FILE = b"0123456789abc"  # init 0-3, one segment 4-9, a tail 10-12 no part names


def range_app(seen: list[str | None], *, flip: str | None = None,
              content_range: bool = True) -> web.Application:
    """Single-file HLS: `flip` is a Range whose answer has one byte changed."""

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Range"))
        if request.match_info["path"] == "master.m3u8":
            return web.Response(text="#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv/index.m3u8\n")
        if request.match_info["path"] == "v/index.m3u8":
            return web.Response(
                text="#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MAP:URI=\"m.mp4\",BYTERANGE=\"4@0\"\n"
                "#EXTINF:1,\n#EXT-X-BYTERANGE:6@4\nm.mp4\n#EXT-X-ENDLIST\n"
            )
        spec = request.headers["Range"].removeprefix("bytes=")
        first, _, last = spec.partition("-")
        end = int(last) if last else len(MEDIA_FILE) - 1
        data = MEDIA_FILE[int(first) : end + 1]
        if request.headers["Range"] == flip:
            data = b"X" + data[1:]
        headers = {"Content-Range": f"bytes {first}-{end}/{len(MEDIA_FILE)}"} if content_range \
            else {}
        return web.Response(status=206, body=data, headers=headers)

    app = web.Application()
    app.router.add_get("/s/{token}/t1/{path:.+}", handler)
    return app


async def test_byte_range_parts_are_requested_with_a_range_header_and_hash_checked() -> None:
    """The parts and the tail no part names add up to the manifest's sha256."""
    seen: list[str | None] = []
    expected = {"v/m.mp4": hashlib.sha256(MEDIA_FILE).hexdigest()}
    async with TestServer(range_app(seen), host="127.0.0.1") as srv, \
            aiohttp.ClientSession() as s:
        report = await FailoverClient(s, [url(srv.port)], expected=expected).play()
    assert report.ok, report.errors
    assert seen == [None, None, "bytes=0-3", "bytes=4-9", "bytes=10-12"]
    assert [f.size for f in report.segments] == [4, 6]


@pytest.mark.parametrize("flip", ["bytes=0-3", "bytes=4-9", "bytes=10-12"])
async def test_a_wrong_byte_in_any_range_part_fails_the_file(flip: str) -> None:
    seen: list[str | None] = []
    expected = {"v/m.mp4": hashlib.sha256(MEDIA_FILE).hexdigest()}
    async with TestServer(range_app(seen, flip=flip), host="127.0.0.1") as srv, \
            aiohttp.ClientSession() as s:
        report = await FailoverClient(s, [url(srv.port)], expected=expected).play()
    assert report.failed == ["v/m.mp4"]
    assert any("do not add up to the manifest's sha256" in e for e in report.errors)


async def test_a_part_without_the_range_it_asked_for_moves_to_the_next_url() -> None:
    """A 206 without Content-Range (RFC 9110 §15.3.7 requires one) is not trusted."""
    bad, good = [], []
    expected = {"v/m.mp4": hashlib.sha256(MEDIA_FILE).hexdigest()}
    async with TestServer(range_app(bad, content_range=False), host="127.0.0.1") as b, \
            TestServer(range_app(good), host="127.0.0.1") as g, aiohttp.ClientSession() as s:
        report = await FailoverClient(s, [url(b.port), url(g.port)], expected=expected).play()
    assert report.ok and report.failovers >= 1
    assert "bytes=4-9" in good


def test_an_empty_url_list_is_a_clear_error() -> None:
    with pytest.raises(ClientError, match="empty"):
        FailoverClient(None, [])  # type: ignore[arg-type]


async def test_a_server_that_hangs_is_left_after_the_timeout_for_the_next_url() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=500)

    slow = web.Application()
    slow.router.add_get("/s/{token}/t1/{path:.+}", hang)
    async with TestServer(slow, host="127.0.0.1") as one, TestServer(
        make_app(), host="127.0.0.1"
    ) as two, aiohttp.ClientSession() as s:
        client = FailoverClient(s, [url(one.port), url(two.port)], timeout=0.3, expected=SHA)
        started = time.monotonic()
        report = await client.play("low")
        elapsed = time.monotonic() - started
    assert report.ok and report.failovers == 1
    assert "did not answer in time" in report.errors[0]
    assert 0.3 <= report.worst_stall < 2 and elapsed < 3
