"""One head serialiser: the answers of every path carry the same header fields, in the
same order.

Fast hit, large hit, a miss answered once its fill landed, the tail of a growing fill, a
fill of unknown length streamed as it grows, a relay, 304, 416 and HEAD of objects that a
real HTTP client fetches from a real edge over loopback; the only fields that differ are
those the status itself defines (RFC 9110 §14.4, §15.4.5, §15.5.17) and the framing. The
edge's HTTPS listener answers the same hits through the same hit protocol with the same
fields."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web

from edge.app import EDGE_KEY, make_app
from edge.workers import start_listeners
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin
from tests.vcdn.tls_helpers import issue

ETAG = '"v1"'
ORIGIN_FIELDS = {
    "Content-Type": "video/mp4",
    "Cache-Control": "public, max-age=3600",
    "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
    "Accept-Ranges": "bytes",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
#: Fields whose presence the status decides: a 206 and a 416 describe the range, a 304
#: sends no representation metadata beyond what §15.4.5 lists.
BY_STATUS = {"content-range", "content-length", "content-type", "transfer-encoding"}
#: A 416 is not the stored representation: the stored Cache-Control would let a
#: downstream cache keep the error as if it were (`vcdn.httpserve.wire.CACHE_CONTROL_ON`).
#: A relay is passed through unstored, first-hand: Age would claim it came from a cache
#: (RFC 9111 §5.1), so only the upstream's own Age goes on.
NOT_ON = {"416": {"cache-control"}, "relay": {"age"}}


async def _names(
    s: aiohttp.ClientSession, method: str, url: str, *, chunked: bool = False, **kw: object
) -> list[str]:
    """The answer's field names, lower-cased, in the order they came."""
    async with s.request(method, url, **kw) as r:  # type: ignore[arg-type]
        await r.read()
        assert r.headers.get("Server") == "vcdn", (url, r.headers.get("Server"))
        assert (r.headers.get("Transfer-Encoding") == "chunked") == chunked, url
        return [k.lower() for k in r.headers if k.lower() not in BY_STATUS]


async def test_every_path_sends_the_same_fields(tmp_path: Path) -> None:
    origin = ScriptedOrigin()
    big = bytes(range(256)) * 4096  # 1 MiB: above the one-write body size
    for name, body, pieces in (("big", big, 8), ("small", b"s" * 5000, 1),
                               ("other", big, 1), ("part", big, 8)):
        origin.scripts[f"/v/t/{name}.m4s"] = Script(
            body=body, headers=dict(ORIGIN_FIELDS), etag=ETAG, pieces=pieces,
            delay=0.05 if pieces > 1 else 0.0, ranges=True, length=name != "part",
        )
    runner = web.AppRunner(origin.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up = f"http://127.0.0.1:{runner.addresses[0][1]}"
    ca = trustme.CA()
    chain = issue(ca, tmp_path / "tls", "127.0.0.1")
    settings = edge_settings(tmp_path, up, auth="none", signing_keys="", port=0,
                             range_fill_max=0, tls_cert=chain.cert, tls_key=chain.key,
                             tls_port=0)
    app = make_app(settings)
    listening = await start_listeners(app, settings, shutdown_timeout=1.0)
    edge_runner, (url, tls_url) = listening.runner, listening.urls
    assert url.startswith("http://") and tls_url.startswith("https://")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    names: dict[str, list[str]] = {}
    over_tls: dict[str, list[str]] = {}
    try:
        async with aiohttp.ClientSession() as s, aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ctx)) as tls:
            names["tail"] = await _names(s, "GET", f"{url}/v/t/big.m4s")
            names["miss"] = await _names(s, "GET", f"{url}/v/t/small.m4s")
            names["growing"] = await _names(s, "GET", f"{url}/v/t/part.m4s", chunked=True)
            await settle(app)
            stats = app[EDGE_KEY].stats
            before = stats.fast_hits
            names["fast hit"] = await _names(s, "GET", f"{url}/v/t/small.m4s")
            names["large hit"] = await _names(s, "GET", f"{url}/v/t/big.m4s")
            names["304"] = await _names(s, "GET", f"{url}/v/t/big.m4s",
                                        headers={"If-None-Match": ETAG})
            names["416"] = await _names(s, "GET", f"{url}/v/t/big.m4s",
                                        headers={"Range": "bytes=99999999-"})
            names["HEAD"] = await _names(s, "HEAD", f"{url}/v/t/big.m4s")
            assert stats.fast_hits == before + 5  # all five answered by the hit protocol
            names["relay"] = await _names(s, "GET", f"{url}/v/t/other.m4s",
                                          headers={"Range": "bytes=10-99"})
            assert origin.count("/v/t/other.m4s") == 1
            # The same hits over HTTPS: the same hit protocol answers them (bodies through
            # the TLS transport), with the same fields.
            before = stats.fast_hits
            over_tls["fast hit"] = await _names(tls, "GET", f"{tls_url}/v/t/small.m4s")
            over_tls["large hit"] = await _names(tls, "GET", f"{tls_url}/v/t/big.m4s")
            over_tls["304"] = await _names(tls, "GET", f"{tls_url}/v/t/big.m4s",
                                           headers={"If-None-Match": ETAG})
            over_tls["416"] = await _names(tls, "GET", f"{tls_url}/v/t/big.m4s",
                                           headers={"Range": "bytes=99999999-"})
            over_tls["HEAD"] = await _names(tls, "HEAD", f"{tls_url}/v/t/big.m4s")
            assert stats.fast_hits == before + 5
            over_tls["relay"] = await _names(tls, "GET", f"{tls_url}/v/t/other.m4s",
                                             headers={"Range": "bytes=10-99"})
    finally:
        await edge_runner.cleanup()
        await runner.cleanup()
        await asyncio.sleep(0)
    reference = names["fast hit"]
    assert {"age", "date", "via", "server", "etag", "cache-control"} <= set(reference)
    for path, got in names.items():
        expected = [name for name in reference if name not in NOT_ON.get(path, set())]
        assert set(got) == set(expected), (path, sorted(set(got) ^ set(expected)))
        assert got == expected, ("order", path, got)
    for path, got in over_tls.items():
        assert got == names[path], ("https", path, got, names[path])
