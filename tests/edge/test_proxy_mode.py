"""`vcdn edge --auth none`: a plain RFC 9111 caching reverse proxy for any HTTP origin."""

from __future__ import annotations

import os

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge.app import make_app
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin


@pytest.fixture
async def origin() -> ScriptedOrigin:
    return ScriptedOrigin()


@pytest.fixture
async def proxy(aiohttp_server, tmp_path, origin: ScriptedOrigin) -> TestServer:  # type: ignore[no-untyped-def]
    up = await aiohttp_server(origin.app)
    settings = edge_settings(
        tmp_path, str(up.make_url("")).rstrip("/"), auth="none", mode="proxy", signing_keys=""
    )
    return await aiohttp_server(make_app(settings))


async def _get(proxy: TestServer, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.get(proxy.make_url(path), headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


async def _twice(proxy: TestServer, path: str) -> list[tuple[int, dict[str, str], bytes]]:
    first = await _get(proxy, path)
    await settle(proxy.app)  # let the fill publish
    second = await _get(proxy, path)
    await settle(proxy.app)
    return [first, second]


async def test_max_age_is_cached(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """A fresh response (max-age) is served from the cache the second time, with Age."""
    origin.scripts["/a"] = Script(
        b"hello", headers={"Cache-Control": "max-age=60", "X-Custom": "1"}
    )
    _first, second = await _twice(proxy, "/a")
    assert origin.count("/a") == 1
    assert second[2] == b"hello" and second[1]["X-Custom"] == "1"
    assert second[1]["Cache-Control"] == "max-age=60"
    assert "vcdn-edge" in second[1]["Via"]


async def test_no_store_is_not_stored(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """no-store: every request goes upstream, and nothing lands on disk."""
    origin.scripts["/n"] = Script(b"secret", headers={"Cache-Control": "no-store"})
    results = await _twice(proxy, "/n")
    assert [r[2] for r in results] == [b"secret", b"secret"]
    assert origin.count("/n") == 2


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "private, max-age=60"}, {"Cache-Control": "max-age=60", "Vary": "*"}],
)
async def test_private_and_vary_star_responses_not_stored(
    proxy: TestServer, origin: ScriptedOrigin, headers: dict[str, str]
) -> None:
    """A shared cache stores neither private responses nor ones varying on everything
    (``Vary: *``); other Vary responses are variants (tests/edge/test_vary.py)."""
    origin.scripts["/p"] = Script(b"mine", headers=headers)
    await _twice(proxy, "/p")
    assert origin.count("/p") == 2


async def test_a_response_varying_on_cookie_is_one_variant_per_cookie(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    origin.scripts["/p"] = Script(b"mine", headers={"Cache-Control": "max-age=60",
                                                    "Vary": "Cookie"})
    for cookie in ("a=1", "a=2", "a=1"):
        await _get(proxy, "/p", Cookie=cookie)
        await settle(proxy.app)
    assert origin.count("/p") == 2


async def test_authorization_requests_bypass_the_cache(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """§3.5: requests with Authorization are forwarded (with it) and not stored."""
    origin.scripts["/auth"] = Script(b"x", headers={"Cache-Control": "max-age=60"})
    for _ in range(2):
        await _get(proxy, "/auth", Authorization="Bearer t")
    assert origin.count("/auth") == 2
    assert origin.seen[-1].headers["Authorization"] == "Bearer t"


async def test_stale_response_revalidated_and_304_updates_headers(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """A stale entry is revalidated with If-None-Match; the 304's headers replace the stored
    ones and the stored body is served."""
    origin.scripts["/live.m3u8"] = Script(
        b"#EXTM3U v1", etag='"v1"', headers={"Cache-Control": "max-age=0", "X-Rev": "a"}
    )
    await _twice(proxy, "/live.m3u8")
    origin.scripts["/live.m3u8"].headers = {"Cache-Control": "max-age=60", "X-Rev": "b"}
    status, headers, body = await _get(proxy, "/live.m3u8")
    assert (status, body, headers["X-Rev"]) == (200, b"#EXTM3U v1", "b")
    conditional = [s for s in origin.seen if "If-None-Match" in s.headers]
    assert conditional and conditional[-1].headers["If-None-Match"] == '"v1"'
    before = origin.count("/live.m3u8")
    await settle(proxy.app)
    assert (await _get(proxy, "/live.m3u8"))[2] == b"#EXTM3U v1"
    assert origin.count("/live.m3u8") == before  # fresh now (max-age=60 from the 304)


async def test_changed_live_playlist_is_refetched(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """A stale playlist whose ETag changed upstream is replaced by the new body."""
    origin.scripts["/l.m3u8"] = Script(b"one", etag='"1"', headers={"Cache-Control": "max-age=0"})
    await _twice(proxy, "/l.m3u8")
    origin.scripts["/l.m3u8"] = Script(b"two", etag='"2"', headers={"Cache-Control": "max-age=0"})
    assert (await _get(proxy, "/l.m3u8"))[2] == b"two"


async def test_stale_if_error(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """RFC 5861: a stale entry stands in for an upstream 5xx within stale-if-error."""
    origin.scripts["/s"] = Script(
        b"old", headers={"Cache-Control": "max-age=0, stale-if-error=600"}
    )
    await _twice(proxy, "/s")
    origin.scripts["/s"] = Script(b"boom", status=500)
    status, _, body = await _get(proxy, "/s")
    assert (status, body) == (200, b"old")


async def test_upstream_error_without_stale_if_error_is_relayed(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """Without stale-if-error, an upstream 5xx reaches the client (never a stale body)."""
    origin.scripts["/e"] = Script(b"old", headers={"Cache-Control": "max-age=0"})
    await _twice(proxy, "/e")
    origin.scripts["/e"] = Script(b"boom", status=500)
    status, _, body = await _get(proxy, "/e")
    assert status == 500 and body == b"boom"


async def test_unsafe_methods_forwarded_and_invalidate(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """§4.4: POST/PUT/DELETE go upstream uncached, with their body, and evict the target."""
    origin.scripts["/doc"] = Script(b"v1", headers={"Cache-Control": "max-age=600"})
    await _twice(proxy, "/doc")
    assert origin.count("/doc") == 1
    async with aiohttp.ClientSession() as s:
        async with s.put(proxy.make_url("/doc"), data=b"new body") as r:
            assert r.status == 200
    assert origin.seen[-1].method == "PUT" and origin.seen[-1].body == b"new body"
    assert origin.seen[-1].headers.get("Content-Length") == "8"  # not re-framed as chunked
    origin.scripts["/doc"] = Script(b"v2", headers={"Cache-Control": "max-age=600"})
    assert (await _get(proxy, "/doc"))[2] == b"v2"
    assert origin.count("/doc") == 2


async def test_age_includes_upstream_age(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """§4.2.3: the Age we send accounts for the Age the upstream reported."""
    origin.scripts["/aged"] = Script(b"x", headers={"Cache-Control": "max-age=600", "Age": "100"})
    _, second = await _twice(proxy, "/aged")
    assert int(second[1]["Age"]) >= 100


async def test_chunked_upstream_is_cached(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """A body without Content-Length is stored once complete, and ranges of it work."""
    data = os.urandom(300_000)
    origin.scripts["/c"] = Script(
        data, headers={"Cache-Control": "max-age=60"}, length=False, pieces=5
    )
    first, second = await _twice(proxy, "/c")
    assert first[2] == data and second[2] == data
    status, _headers, body = await _get(proxy, "/c", Range="bytes=10-19")
    assert (status, body) == (206, data[10:20])
    assert origin.count("/c") == 1


async def test_404_passes_through_uncached(proxy: TestServer, origin: ScriptedOrigin) -> None:
    """Error statuses are relayed and not stored."""
    await _twice(proxy, "/missing")
    assert origin.count("/missing") == 2


async def test_post_invalidates_target_and_location(
    proxy: TestServer, origin: ScriptedOrigin
) -> None:
    """A POST answered 201 with Location evicts both the target and the Location (§4.4)."""
    origin.scripts["/list"] = Script(b"[1]", headers={"Cache-Control": "max-age=600"})
    origin.scripts["/item/2"] = Script(b"old 2", headers={"Cache-Control": "max-age=600"})
    await _twice(proxy, "/list")
    await _twice(proxy, "/item/2")
    origin.scripts["/list"] = Script(b"ok", status=201, headers={"Location": "/item/2"})
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.make_url("/list"), json={"id": 2}) as r:
            assert r.status == 201 and r.headers["Location"] == "/item/2"
    assert origin.seen[-1].method == "POST" and origin.seen[-1].body == b'{"id": 2}'
    origin.scripts["/list"] = Script(b"[1, 2]", headers={"Cache-Control": "max-age=600"})
    origin.scripts["/item/2"] = Script(b"new 2", headers={"Cache-Control": "max-age=600"})
    assert (await _get(proxy, "/list"))[2] == b"[1, 2]"
    assert (await _get(proxy, "/item/2"))[2] == b"new 2"


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_unstored_answer_of_unknown_length_is_relayed_whole(
    proxy: TestServer, origin: ScriptedOrigin, version: str
) -> None:
    """An answer the upstream sends chunked and that may not be stored is relayed as it
    comes: chunked to an HTTP/1.1 client, and to an HTTP/1.0 one (which cannot read
    chunks) until the connection closes. Before, the HTTP/1.0 client got a 500."""
    import asyncio

    body = os.urandom(300_000)
    origin.scripts["/c"] = Script(body, headers={"Cache-Control": "no-store"}, length=False,
                                  pieces=3, delay=0.01)
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        writer.write(f"GET /c HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), 10)  # to EOF
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:])}
    assert lines[0].startswith("HTTP/1.1 200 ") and fields["server"] == "vcdn"
    assert fields["cache-status"] == "vcdn-edge; fwd=uri-miss; fwd-status=200"
    assert "content-length" not in fields
    if version == "1.1":
        assert fields["transfer-encoding"] == "chunked"
        chunks, pos = [], 0
        while True:
            end = rest.index(b"\r\n", pos)
            size = int(rest[pos:end], 16)
            chunks.append(rest[end + 2 : end + 2 + size])
            pos = end + 2 + size + 2
            if size == 0:
                break
        assert b"".join(chunks) == body and pos == len(rest)
    else:
        assert "transfer-encoding" not in fields and fields["connection"] == "close"
        assert rest == body
