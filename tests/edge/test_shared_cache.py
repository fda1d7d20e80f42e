"""A shared cache under attack (issue 11): keys that differ from what is fetched, range
requests that cost whole objects, per-user answers replayed to everyone, and one failing
URL that trips the breaker for all. Each test is the attack, against real apps on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from yarl import URL

from edge.app import EDGE_KEY, make_app
from origin.content.app import make_app as make_origin_app
from origin.content.settings import OriginSettings
from tests.edge.conftest import TITLE, edge_settings, settle, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin

BIG = 8 * 1024 * 1024


async def _edge(aiohttp_server: Any, tmp_path: Path, up: TestServer, **kw: Any) -> TestServer:
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), **kw)
    return await aiohttp_server(make_app(settings))


async def _proxy(aiohttp_server: Any, tmp_path: Path, up: TestServer, **kw: Any) -> TestServer:
    return await _edge(
        aiohttp_server, tmp_path, up, auth="none", mode="proxy", signing_keys="", **kw
    )


async def _get(
    server: TestServer, target: str, **headers: str
) -> tuple[int, Any, bytes]:
    # encoded=True: the target goes out byte for byte as written here.
    url = URL(str(server.make_url("")).rstrip("/") + target, encoded=True)
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=headers) as r:
            return r.status, r.headers, await r.read()


# --- 4. cache keys equal what is fetched -------------------------------------------------


async def test_appliance_variants_cost_one_fill(aiohttp_server, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """Encoded '?'/'#' are refused (400, logged); queries and %-encodings of one file
    share its key and its one upstream target, so ten variants cost at most one fill."""
    caplog.set_level(logging.INFO, logger="vcdn.edge")
    origin = ScriptedOrigin()
    origin.ignore_query = True
    origin.scripts["/v/demo/big.bin"] = Script(
        body=os.urandom(200_000), headers={"Cache-Control": "max-age=600"}, ranges=True
    )
    up = await aiohttp_server(origin.app)
    edge = await _edge(aiohttp_server, tmp_path, up, auth="none")
    tok = signed("big.bin").rsplit("/", 1)[0]  # /s/{token}/demo
    refused = [
        "/v/demo/big.bin%3Fbust=1",
        "/v/demo/big.bin%3fbust=2",
        "/v/demo/big.bin%23frag",
        f"{tok}/big.bin%3Fbust=3",
    ]
    same = [
        "/v/demo/big.bin",
        "/v/demo/big.bin?bust=4",
        "/v/demo/%62ig.bin",
        "/v/demo/big.bin?x=1&y=%3F",
        f"{tok}/big.bin?bust=5",
        f"{tok}/b%69g.bin",
    ]
    for target in refused:
        status, _, body = await _get(edge, target, Range="bytes=0-0")
        assert status == 400, (target, status)
        assert b"upstream" in body
    refusals = [r for r in caplog.records if r.getMessage() == "request_refused"]
    assert len(refusals) == len(refused)
    for target in same:
        status, _, body = await _get(edge, target, Range="bytes=0-0")
        assert status == 206 and len(body) == 1, (target, status)
        await settle(edge.app)
    for _ in range(500):  # the range pass-through fills the small object behind it
        if edge.app[EDGE_KEY].store.stats().objects == 1:
            break
        await asyncio.sleep(0.01)
    assert {s.raw for s in origin.seen} == {"/v/demo/big.bin"}
    assert sum(1 for s in origin.seen if "Range" not in s.headers) == 1
    assert edge.app[EDGE_KEY].store.stats().objects == 1


async def test_proxy_forwards_the_target_it_keys(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Proxy mode sends `/a/../b` and `%41` upstream as received (never normalised)."""
    origin = ScriptedOrigin()
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up)
    for target in ("/a/../b", "/x/%41bc", "/q?x=%41&y=1"):
        await _get(proxy, target)
    assert [s.raw for s in origin.seen] == ["/a/../b", "/x/%41bc", "/q?x=%41&y=1"]


async def test_proxy_keeps_the_origins_dotdot_refusal(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A `..` through a proxy edge reaches the vcdn origin as `..`, which refuses it (400)
    instead of serving, and caching under the `..` key, the file it would normalise to."""
    root = tmp_path / "origin"
    (root / TITLE / "v1").mkdir(parents=True)
    (root / TITLE / "v1" / "index.m3u8").write_text("#EXTM3U\n")
    up = await aiohttp_server(make_origin_app(OriginSettings(root=root)))
    proxy = await _proxy(aiohttp_server, tmp_path, up)
    status, _, _ = await _get(proxy, f"/v/{TITLE}/x/../v1/index.m3u8")
    assert status == 400
    status, _, body = await _get(proxy, f"/v/{TITLE}/v1/index.m3u8")
    assert status == 200 and body == b"#EXTM3U\n"


async def test_proxy_query_policy(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`keep` (default): each query is its own object upstream and in the cache; `ignore`:
    one object, and the upstream is asked without the query (key = target)."""
    origin = ScriptedOrigin()
    origin.ignore_query = True
    origin.scripts["/p.m3u8"] = Script(body=b"#EXTM3U\n", headers={"Cache-Control": "max-age=60"})
    up = await aiohttp_server(origin.app)
    keep = await _proxy(aiohttp_server, tmp_path / "keep", up)
    for q in ("a=1", "a=2", "a=1"):
        assert (await _get(keep, f"/p.m3u8?{q}"))[0] == 200
        await settle(keep.app)
    assert [s.raw for s in origin.seen] == ["/p.m3u8?a=1", "/p.m3u8?a=2"]
    origin.seen.clear()
    ignore = await _proxy(aiohttp_server, tmp_path / "ignore", up, query_policy="ignore")
    for q in ("a=1", "a=2", "b=3"):
        assert (await _get(ignore, f"/p.m3u8?{q}"))[0] == 200
        await settle(ignore.app)
    assert [s.raw for s in origin.seen] == ["/p.m3u8"]


# --- 5. range fills are bounded ----------------------------------------------------------


async def _range_client(edge: TestServer, path: str) -> int:
    sent = 0
    for first, last in ((0, 0), (1000, 1999), (BIG // 2, BIG // 2 + 99), (BIG - 10, BIG - 1)):
        status, headers, body = await _get(edge, path, Range=f"bytes={first}-{last}")
        assert status == 206 and len(body) == last - first + 1
        assert headers["Content-Range"] == f"bytes {first}-{last}/{BIG}"
        sent += len(body)
        await settle(edge.app)
    return sent


async def test_range_misses_of_a_large_object_do_not_fill_it(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Appliance mode (title not in the catalog) and proxy mode: a range-only client (and
    a HEAD) makes the edge fetch at most 2× what it sends plus one whole-fill limit."""
    origin = ScriptedOrigin()
    body = os.urandom(BIG)
    for path in ("/v/demo/big.bin", "/big.bin"):
        origin.scripts[path] = Script(
            body=body, headers={"Cache-Control": "max-age=600"}, ranges=True
        )
    up = await aiohttp_server(origin.app)
    appliance = await _edge(aiohttp_server, tmp_path / "a", up, auth="none")
    proxy = await _proxy(aiohttp_server, tmp_path / "p", up)
    for edge, path in ((appliance, "/v/demo/big.bin"), (proxy, "/big.bin")):
        origin.sent_bytes = 0
        sent = await _range_client(edge, path)
        async with aiohttp.ClientSession() as s, s.head(edge.make_url(path)) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(BIG)
        await settle(edge.app)
        limit = edge.app[EDGE_KEY].settings.range_fill_max
        assert origin.sent_bytes <= 2 * sent + limit, (path, origin.sent_bytes, sent)
        assert edge.app[EDGE_KEY].store.stats().objects == 0


async def test_catalog_titles_fill_whole_on_a_range(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A title the appliance holds by its fill manifest (pinned), or a signed URL, is
    filled whole on a range miss: the next range is a hit."""
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/big.bin"] = Script(
        body=os.urandom(BIG), headers={"Cache-Control": "max-age=600"}, ranges=True
    )
    origin.scripts["/v/other/big.bin"] = origin.scripts["/v/demo/big.bin"]
    up = await aiohttp_server(origin.app)
    edge = await _edge(aiohttp_server, tmp_path, up, auth="none")
    edge.app[EDGE_KEY].store.pin_title("other")
    for path in ("/v/other/big.bin", signed("big.bin")):
        assert (await _get(edge, path, Range="bytes=5-9"))[0] == 206
        await settle(edge.app)
    assert edge.app[EDGE_KEY].store.stats().objects == 2
    count = len(origin.seen)
    assert (await _get(edge, signed("big.bin"), Range="bytes=100-199"))[0] == 206
    assert len(origin.seen) == count


async def test_range_miss_of_a_small_object_is_still_cached(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Below the whole-fill limit, a range miss is answered and the object filled whole."""
    origin = ScriptedOrigin()
    origin.scripts["/small.bin"] = Script(
        body=os.urandom(50_000), headers={"Cache-Control": "max-age=600"}, ranges=True
    )
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up)
    status, _, body = await _get(proxy, "/small.bin", Range="bytes=10-19")
    assert status == 206 and len(body) == 10
    for _ in range(500):
        if proxy.app[EDGE_KEY].store.stats().objects == 1:
            break
        await asyncio.sleep(0.01)
    await settle(proxy.app)
    count = len(origin.seen)
    assert (await _get(proxy, "/small.bin", Range="bytes=0-99"))[0] == 206
    assert len(origin.seen) == count


# --- 6. shared-cache privacy -------------------------------------------------------------


async def test_set_cookie_is_never_replayed(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An upstream answer with Set-Cookie (even max-age=600) goes to its own client only;
    the next client gets a fresh upstream answer, never the first one's session."""
    origin = ScriptedOrigin()
    origin.scripts["/home"] = Script(
        body=b"hello",
        headers={"Cache-Control": "max-age=600", "Set-Cookie": "session=victim-123; Path=/"},
    )
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up)
    _, first, _ = await _get(proxy, "/home")
    assert first["Set-Cookie"] == "session=victim-123; Path=/"
    await settle(proxy.app)
    origin.scripts["/home"].headers["Set-Cookie"] = "session=attacker-456; Path=/"
    _, second, _ = await _get(proxy, "/home")
    assert second["Set-Cookie"] == "session=attacker-456; Path=/"
    assert origin.count("/home") == 2
    assert proxy.app[EDGE_KEY].store.stats().objects == 0


async def test_authorization_requests_stay_uncached(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RFC 9111 §3.5: an answer to a request with Authorization is not stored for others."""
    origin = ScriptedOrigin()
    origin.scripts["/me"] = Script(body=b"alice", headers={"Cache-Control": "max-age=600"})
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up)
    assert (await _get(proxy, "/me", Authorization="Bearer alice"))[2] == b"alice"
    await settle(proxy.app)
    origin.scripts["/me"].body = b"anonymous"
    assert (await _get(proxy, "/me"))[2] == b"anonymous"


# --- 7. breaker semantics ----------------------------------------------------------------


async def test_one_failing_url_does_not_open_the_breaker(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A client hammering one URL that answers 500 leaves every other client's misses
    succeeding (before: the breaker opened and ~40 % of them got 502)."""
    origin = ScriptedOrigin()
    origin.scripts["/bad"] = Script(status=500, body=b"boom")
    for i in range(40):
        origin.scripts[f"/ok/{i}"] = Script(body=b"x" * 100, headers={"Cache-Control": "max-age=9"})
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up, breaker_threshold=3)

    async def hammer() -> list[int]:
        return [(await _get(proxy, "/bad"))[0] for _ in range(20)]

    async def others() -> list[int]:
        out = []
        for i in range(40):
            out.append((await _get(proxy, f"/ok/{i}"))[0])
            await asyncio.sleep(0)
        return out

    bad, good = await asyncio.gather(hammer(), others())
    assert set(bad) == {500}
    assert good == [200] * 40


async def test_breaker_opens_on_failures_across_urls(aiohttp_server, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """5xx on many different URLs is the upstream in trouble: the breaker opens and the
    next miss fails at once with 502, without asking the upstream (and says so in the log)."""
    caplog.set_level(logging.INFO, logger="vcdn.edge")
    origin = ScriptedOrigin()
    for i in range(5):
        origin.scripts[f"/bad/{i}"] = Script(status=503, body=b"down")
    origin.scripts["/fine"] = Script(body=b"ok")
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up, breaker_threshold=3, retries=0)
    for i in range(3):
        assert (await _get(proxy, f"/bad/{i}"))[0] == 503
    count = len(origin.seen)
    status, _, body = await _get(proxy, "/fine")
    assert status == 502 and b"failed repeatedly" in body
    assert [r.getMessage() for r in caplog.records].count("breaker_opened") == 1
    assert len(origin.seen) == count


async def test_negative_cache_absorbs_repeats_of_an_error(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 404 or a 500 that says max-age is kept a short while (`negative_ttl`):
    repeats cost no upstream request; a 500 without freshness is never stored (§3)."""
    origin = ScriptedOrigin()
    origin.scripts["/gone"] = Script(
        status=404, body=b"no such thing", headers={"Cache-Control": "max-age=30"}
    )
    origin.scripts["/err"] = Script(
        status=500, body=b"err", headers={"Cache-Control": "max-age=30"}
    )
    origin.scripts["/plain500"] = Script(status=500, body=b"plain")
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, up, retries=0)
    for path, status, body in (("/gone", 404, b"no such thing"), ("/err", 500, b"err")):
        for _ in range(5):
            got = await _get(proxy, path)
            assert (got[0], got[2]) == (status, body)
        assert origin.count(path) == 1, path
    for _ in range(3):
        assert (await _get(proxy, "/plain500"))[0] == 500
    assert origin.count("/plain500") == 3


async def test_fast_path_keys_like_the_full_path(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Behind the hit fast path (a real listener): an encoded '?' is still 400 once the
    plain file is cached, and `query_policy = "ignore"` makes every query of it a hit."""
    from edge.workers import start_edge

    origin = ScriptedOrigin()
    origin.ignore_query = True
    origin.scripts["/v/demo/a.m3u8"] = Script(
        body=b"#EXTM3U\n", headers={"Cache-Control": "max-age=600"}
    )
    up = await aiohttp_server(origin.app)
    base = str(up.make_url("")).rstrip("/")
    for mode, kw, path in (
        ("appliance", {"auth": "none"}, "/v/demo/a.m3u8"),
        ("proxy", {"auth": "none", "signing_keys": "", "query_policy": "ignore"}, "/v/demo/a.m3u8"),
    ):
        settings = edge_settings(tmp_path / mode, base, mode=mode, port=0, **kw)
        app = make_app(settings)
        runner, url = await start_edge(app, settings)
        try:
            async with aiohttp.ClientSession() as s:
                for target in (path, path, path + "?x=1", path + "?y=2"):
                    async with s.get(URL(url + target, encoded=True)) as r:
                        assert r.status == 200 and await r.read() == b"#EXTM3U\n"
                    await settle(app)
                if mode == "appliance":
                    async with s.get(URL(url + path + "%3Fx=1", encoded=True)) as r:
                        assert r.status == 400
        finally:
            await runner.cleanup()
        assert app[EDGE_KEY].stats.fast_hits >= 1
    assert [s.raw for s in origin.seen] == ["/v/demo/a.m3u8", "/v/demo/a.m3u8"]
