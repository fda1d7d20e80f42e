"""The hit fast path (edge.fastpath) behind a real socket: the shared table on hits, the
client's cache directives, and hand-off to aiohttp mid-connection without reordering
(the head parser's own cases: tests/vcdn/httpserve/test_fasthead.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.app import EDGE_KEY, make_app
from edge.workers import start_edge
from tests.edge.conftest import TITLE, edge_settings, settle, signed
from tests.http_cases import CASES, Resource, check

BIG = "v1/big.m4s"
SMALL = "v1/seg_00001.m4s"


def _fast_hits() -> int:
    return sum(app[EDGE_KEY].stats.fast_hits for app in APPS)


APPS: list[web.Application] = []


@pytest.fixture
async def fast(origin: TestServer, origin_root: Path, tmp_path: Path) -> AsyncIterator[str]:
    (origin_root / TITLE / BIG).write_bytes(os.urandom(700_000))
    settings = edge_settings(tmp_path, str(origin.make_url("")).rstrip("/"), port=0)
    app = make_app(settings)
    APPS[:] = [app]
    runner, url = await start_edge(app, settings)
    try:
        yield url
    finally:
        await runner.cleanup()


async def _warm(url: str, path: str, data: bytes) -> Resource:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + signed(path)) as resp:
            assert await resp.read() == data
            res = Resource(data, resp.headers["ETag"], resp.headers["Last-Modified"])
    await settle(APPS[0])  # the fill publishes
    return res


@pytest.mark.parametrize("path", [SMALL, BIG])
async def test_table_on_fast_hits(fast: str, origin_root: Path, path: str) -> None:
    """Every range/conditional case answered on the fast path matches the table."""
    data = (origin_root / TITLE / path).read_bytes()
    res = await _warm(fast, path, data)
    async with aiohttp.ClientSession() as s:
        for case in CASES:
            before = _fast_hits()
            async with s.request(
                case.method, fast + signed(path), headers=case.request_headers(res)
            ) as r:
                body = await r.read()
                check(case, res, r.status, {k.lower(): v for k, v in r.headers.items()}, body)
                if r.status in (200, 206, 304):
                    assert "Date" in r.headers and r.headers["Via"].endswith("vcdn-edge")
                # Answered before routing: in HitProtocol or, for bodies that want
                # sendfile, by the request-level fast path after the hand-off.
                assert _fast_hits() == before + 1, case


@pytest.mark.parametrize(("directives", "hit"), [
    ({"Cache-Control": "max-age=3600"}, True),
    ({"Cache-Control": "max-stale"}, True),
    ({"Cache-Control": "no-cache"}, False),
    ({"Pragma": "no-cache"}, False),
])
async def test_client_cache_directives_are_judged_by_the_hit_path(
    fast: str, origin_root: Path, directives: dict[str, str], hit: bool
) -> None:
    """A fresh object asked for with request directives that allow it (RFC 9111 §5.2.1)
    is a hit of the one pipeline; no-cache goes to the application to revalidate."""
    data = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, data)
    before = _fast_hits()
    async with aiohttp.ClientSession() as s:
        async with s.get(fast + signed(SMALL), headers=directives) as r:
            assert r.status == 200 and await r.read() == data
            assert ("; hit" in r.headers["Cache-Status"]) == hit
    assert _fast_hits() == before + (1 if hit else 0)


async def _exchange(url: str, payload: bytes, expect: int) -> list[tuple[int, bytes]]:
    """Write `payload` at once; read `expect` responses (status, body) in order."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    out = []
    for _ in range(expect):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(v)
            for k, _, v in (ln.partition(": ") for ln in lines)
            if k.lower() == "content-length"
        )
        out.append((int(lines[0].split()[1]), await reader.readexactly(length)))
    writer.close()
    return out


async def test_http10_hit_is_answered_whole_and_closed(fast: str, origin_root: Path) -> None:
    """An HTTP/1.0 request (which the hit protocol leaves to aiohttp) gets the stored
    answer from the same pipeline, says Connection: close and is closed after it."""
    data = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, data)
    host, port = fast.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {signed(SMALL)} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)  # to EOF: the edge closes
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
    assert b"\r\nServer: vcdn" in head and body == data


async def test_pipelined_hits_and_a_miss_stay_in_order(fast: str, origin_root: Path) -> None:
    """hit, miss (hands off to aiohttp), hit on one connection: three answers, in order."""
    small = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, small)
    playlist = (origin_root / TITLE / "v1/index.m3u8").read_bytes()
    req = "GET {} HTTP/1.1\r\nHost: x\r\n\r\n"
    payload = (
        req.format(signed(SMALL)) + req.format(signed("v1/index.m3u8")) + req.format(signed(SMALL))
    ).encode()
    answers = await _exchange(fast, payload, 3)
    assert answers == [(200, small), (200, playlist), (200, small)]


async def test_bad_token_on_fast_connection_is_403(fast: str, origin_root: Path) -> None:
    """The fast path never decides a refusal itself; aiohttp answers it (403, empty)."""
    small = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, small)
    answers = await _exchange(
        fast, f"GET /s/k1.1.bad/{TITLE}/{SMALL} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 1
    )
    assert answers == [(403, b"")]


async def test_a_remembered_token_is_no_pass_to_another_title(
    fast: str, origin_root: Path
) -> None:
    """Both titles' objects are hits and both tokens were verified on the fast path: a
    token signed for one title on the other title's path, or a remembered token tampered
    with, is still 403 (the fast path remembers a token with the title it signs)."""
    from tests.edge.conftest import sign

    (origin_root / "other" / "v1").mkdir(parents=True)
    other = os.urandom(5000)
    (origin_root / "other" / SMALL).write_bytes(other)
    small = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, small)
    async with aiohttp.ClientSession() as s:
        async with s.get(fast + signed(SMALL, "other")) as r:
            assert (r.status, await r.read()) == (200, other)
    await settle(APPS[0])
    demo_token, other_token = sign(TITLE), sign("other")
    req = "GET /s/{}/{}/{} HTTP/1.1\r\nHost: x\r\n\r\n"
    payload = "".join((
        req.format(demo_token, TITLE, SMALL), req.format(other_token, "other", SMALL),
        req.format(demo_token, "other", SMALL),
    )).encode()
    before = _fast_hits()
    answers = await _exchange(fast, payload, 3)
    assert answers == [(200, small), (200, other), (403, b"")]
    # A new connection, so the fast path (not aiohttp, which has the first) looks first.
    tampered = demo_token[:-3] + ("AAA" if not demo_token.endswith("AAA") else "BAA")
    answers = await _exchange(fast, req.format(tampered, TITLE, SMALL).encode(), 1)
    assert answers == [(403, b"")]
    assert _fast_hits() == before + 2


async def test_live_playlist_revalidated_then_fast_again(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A live playlist (max-age=1) goes stale: the fast path steps aside, the full path
    revalidates upstream (If-None-Match → 304), and the refreshed headers are what the
    fast path serves next."""
    from tests.edge.scripted_origin import Script, ScriptedOrigin

    origin = ScriptedOrigin()
    origin.scripts["/v/demo/live.m3u8"] = Script(
        b"#EXTM3U\n", etag='"p1"', headers={"Cache-Control": "max-age=1", "X-Rev": "a"}
    )
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), port=0)
    app = make_app(settings)
    APPS[:] = [app]
    runner, url = await start_edge(app, settings)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                async with s.get(url + signed("live.m3u8")) as r:
                    assert r.headers["X-Rev"] == "a"
                await settle(app)
            assert origin.count("/v/demo/live.m3u8") == 1
            origin.scripts["/v/demo/live.m3u8"].headers = {
                "Cache-Control": "max-age=60",
                "X-Rev": "b",
            }
            await asyncio.sleep(1.1)
            async with s.get(url + signed("live.m3u8")) as r:
                assert (r.status, r.headers["X-Rev"], await r.read()) == (200, "b", b"#EXTM3U\n")
            assert origin.seen[-1].headers.get("If-None-Match") == '"p1"'
            before = _fast_hits()
            async with s.get(url + signed("live.m3u8")) as r:
                assert r.headers["X-Rev"] == "b"
            assert _fast_hits() == before + 1  # fast again
            assert origin.count("/v/demo/live.m3u8") == 2
    finally:
        await runner.cleanup()


async def _listening(origin: TestServer, tmp_path: Path, **kw: object) -> tuple[web.AppRunner, str]:
    settings = edge_settings(tmp_path, str(origin.make_url("")).rstrip("/"), port=0, **kw)
    return await start_edge(make_app(settings), settings)


async def test_slow_request_head_is_cut_off(origin: TestServer, tmp_path: Path) -> None:
    """A client dribbling its request head (slowloris) is disconnected at the deadline."""
    runner, url = await _listening(origin, tmp_path, keepalive_timeout=0.5)
    try:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        start = asyncio.get_running_loop().time()
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        try:
            for _ in range(10):
                await asyncio.sleep(0.2)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 3)
        except ConnectionError:
            answer = b""
        assert answer == b""  # closed, never answered
        assert asyncio.get_running_loop().time() - start < 1.9
        writer.close()
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_cap_are_closed(origin: TestServer, tmp_path: Path) -> None:
    """max_connections: a connection over the cap is closed at once; the others work."""
    runner, url = await _listening(origin, tmp_path, max_connections=2)
    try:
        host, port = url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 3) == b""
        r0, w0 = held[0]
        w0.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r0.readuntil(b"\r\n"), 3)).startswith(b"HTTP/1.1 200")
        for _, w in [*held, (reader, writer)]:
            w.close()
    finally:
        await runner.cleanup()


async def test_proxy_mode_hits_take_the_fast_path(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A parent tier (proxy mode) answers fresh hits before routing too, replaying the
    stored end-to-end fields; a request with Authorization, or one that forbids storing
    (request no-store, passed through past the cache), never is."""
    from tests.edge.scripted_origin import Script, ScriptedOrigin

    origin = ScriptedOrigin()
    origin.scripts["/v/t/a.m4s?x=1"] = Script(
        b"abc" * 1000, headers={"Cache-Control": "max-age=60", "X-Origin": "yes"}
    )
    up = await aiohttp_server(origin.app)
    settings = edge_settings(
        tmp_path,
        str(up.make_url("")).rstrip("/"),
        port=0,
        auth="none",
        mode="proxy",
        signing_keys="",
    )
    app = make_app(settings)
    APPS[:] = [app]
    runner, url = await start_edge(app, settings)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/v/t/a.m4s?x=1") as r:
                assert await r.read() == b"abc" * 1000
            await settle(app)
            before = _fast_hits()
            async with s.get(url + "/v/t/a.m4s?x=1", headers={"Range": "bytes=0-2"}) as r:
                assert (r.status, await r.read(), r.headers["X-Origin"]) == (206, b"abc", "yes")
            assert _fast_hits() == before + 1
            async with s.get(url + "/v/t/a.m4s?x=1", headers={"Authorization": "Bearer x"}) as r:
                await r.read()
            assert _fast_hits() == before + 1
            async with s.get(url + "/v/t/a.m4s?x=1", headers={"Cache-Control": "no-store"}) as r:
                await r.read()
            assert _fast_hits() == before + 1
            # The fill, the authorized request and the no-store one.
            assert origin.count("/v/t/a.m4s?x=1") == 3
    finally:
        await runner.cleanup()


async def test_deep_pipeline_of_small_and_large_hits_stays_on_the_protocol(
    fast: str, origin_root: Path
) -> None:
    """120 pipelined hits (~20 MB of answers, large bodies among them) sent before reading
    any: the protocol stops reading while the client does not read, sends every large
    body itself, and every answer arrives, in order, without a hand-off to aiohttp."""
    small = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, small)
    playlist = (origin_root / TITLE / "v1/index.m3u8").read_bytes()
    await _warm(fast, "v1/index.m3u8", playlist)
    big = (origin_root / TITLE / BIG).read_bytes()
    await _warm(fast, BIG, big)
    req = "GET {} HTTP/1.1\r\nHost: x\r\n\r\n"
    paths = [BIG if i % 10 == 0 else SMALL if i % 2 else "v1/index.m3u8" for i in range(120)]
    bodies = {BIG: big, SMALL: small, "v1/index.m3u8": playlist}
    stats = APPS[0][EDGE_KEY].stats
    before, hits = stats.handoffs, _fast_hits()
    answers = await _exchange(fast, "".join(req.format(signed(p)) for p in paths).encode(), 120)
    assert answers == [(200, bodies[p]) for p in paths]
    assert stats.handoffs == before
    assert _fast_hits() == hits + 120


async def test_remembered_token_still_expires(fast: str, origin_root: Path) -> None:
    """The fast path remembers verified URLs, but not past their token's expiry."""
    import time

    from tests.edge.conftest import sign

    small = (origin_root / TITLE / SMALL).read_bytes()
    await _warm(fast, SMALL, small)
    expires = int(time.time()) + 2
    url = f"{fast}/s/{sign(expires=expires)}/{TITLE}/{SMALL}"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert (r.status, await r.read()) == (200, small)
        before = _fast_hits()
        async with s.get(url) as r:
            assert r.status == 200
        assert _fast_hits() == before + 1
        await asyncio.sleep(max(0.0, expires + 1.05 - time.time()))
        async with s.get(url) as r:
            assert (r.status, await r.read()) == (403, b"")


async def test_heads_in_pieces_and_whole_stay_on_the_protocol(
    fast: str, origin_root: Path
) -> None:
    """A head that arrives in pieces (the first shorter than its blank line) and one that
    arrives whole in one read are both answered by the hit protocol, in order."""
    playlist = (origin_root / TITLE / "v1/index.m3u8").read_bytes()
    await _warm(fast, "v1/index.m3u8", playlist)
    req = f"GET {signed('v1/index.m3u8')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    stats = APPS[0][EDGE_KEY].stats
    before, hits = stats.handoffs, _fast_hits()
    host, port = fast.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for piece in (req[:3], req[3:20], req[20:], req):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert await reader.readexactly(len(playlist)) == playlist
    finally:
        writer.close()
    assert stats.handoffs == before
    assert _fast_hits() == hits + 2


async def _one_hit(url: str, target: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    """(status, body, Cache-Status) of one GET on a new connection."""
    async with aiohttp.ClientSession() as s, s.get(url + target, headers=headers) as r:
        return r.status, await r.read(), r.headers.get("Cache-Status", "")


async def test_object_another_worker_stored_is_a_hit_of_the_protocol(
    origin: TestServer, origin_root: Path, tmp_path: Path
) -> None:
    """Two workers over one cache: an object the first stored is, at the second, a hit
    its hit protocol answers from the shared index, large or small, without handing the
    connection to aiohttp (before, every first hit of a worker went there)."""
    (origin_root / TITLE / BIG).write_bytes(os.urandom(700_000))
    settings = edge_settings(tmp_path, str(origin.make_url("")).rstrip("/"), port=0)
    first, second = make_app(settings), make_app(settings)
    r1, url1 = await start_edge(first, settings)
    r2, url2 = await start_edge(second, settings)
    try:
        APPS[:] = [first]
        for path in (SMALL, BIG):
            await _warm(url1, path, (origin_root / TITLE / path).read_bytes())
        stats = second[EDGE_KEY].stats
        before, hits = stats.handoffs, stats.fast_hits
        for path in (SMALL, BIG, SMALL):
            status, body, cache = await _one_hit(url2, signed(path), {})
            assert (status, body) == (200, (origin_root / TITLE / path).read_bytes())
            assert cache == "vcdn-edge; hit"
        assert (stats.handoffs, stats.fast_hits) == (before, hits + 3)
        assert second[EDGE_KEY].stats.misses == 0
    finally:
        await r2.cleanup()
        await r1.cleanup()


async def test_vary_variants_are_hits_of_the_protocol(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A parent tier's stored Vary variants are selected and answered by the hit
    protocol (spellings of one preference share a variant); a request that selects
    none still goes upstream, and so does a variant keyed by the client's address."""
    from tests.edge.scripted_origin import Script, ScriptedOrigin

    origin = ScriptedOrigin()
    lang = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    origin.scripts["/v"] = Script(b"en" * 10_000, headers=dict(lang))
    origin.scripts["/x"] = Script(b"x", headers={"Cache-Control": "max-age=60",
                                                 "Vary": "X-Forwarded-For"})
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), port=0,
                             auth="none", mode="proxy", signing_keys="")
    app = make_app(settings)
    runner, url = await start_edge(app, settings)
    try:
        assert (await _one_hit(url, "/v", {"Accept-Language": "en"}))[:2] == (200, b"en" * 10_000)
        await settle(app)
        origin.scripts["/v"] = Script(b"de", headers=dict(lang))
        assert (await _one_hit(url, "/v", {"Accept-Language": "de"}))[:2] == (200, b"de")
        assert (await _one_hit(url, "/x", {}))[:2] == (200, b"x")
        await settle(app)
        stats = app[EDGE_KEY].stats
        before, hits = stats.handoffs, stats.fast_hits
        for language, body in (("en", b"en" * 10_000), ("DE", b"de"), ("de", b"de"),
                               ("en", b"en" * 10_000)):
            got = await _one_hit(url, "/v", {"Accept-Language": language})
            assert got == (200, body, "vcdn-edge; hit"), language
        assert (stats.handoffs, stats.fast_hits) == (before, hits + 4)
        assert origin.count("/v") == 2
        assert (await _one_hit(url, "/v", {"Accept-Language": "fr"}))[:2] == (200, b"de")
        assert (await _one_hit(url, "/x", {}))[:2] == (200, b"x")
        assert (stats.handoffs, stats.fast_hits) == (before + 2, hits + 4)
        assert origin.count("/v") == 3
    finally:
        await runner.cleanup()
