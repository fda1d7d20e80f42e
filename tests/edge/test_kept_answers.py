"""Final answers other than 200 that a shared cache may store (RFC 9111 §3): redirects,
203 and 204 with explicit freshness, or heuristically cacheable ones (RFC 9110 §15.1)
with a Last-Modified; kept in memory for at most `negative_ttl` and answered again for
GET, HEAD and range requests alike. Before, only 200 and errors were ever reused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge import freshness as f
from edge.app import make_app
from tests.edge.conftest import edge_settings
from tests.edge.scripted_origin import Script, ScriptedOrigin
from vcdn.httpserve.validators import format_http_date

NOW = 1_800_000_000.0
HOUR_AGO = format_http_date(NOW - 3600)


@pytest.mark.parametrize(
    ("status", "headers", "kept"),
    [
        (301, {"Cache-Control": "max-age=60"}, 5.0),
        (203, {"Cache-Control": "max-age=2"}, 2.0),
        (204, {"Cache-Control": "max-age=60"}, 5.0),
        (299, {"Cache-Control": "max-age=60"}, 5.0),
        (302, {"Cache-Control": "max-age=60"}, 5.0),
        (301, {"Last-Modified": HOUR_AGO}, 5.0),  # heuristically cacheable (§4.2.2)
        (302, {"Last-Modified": HOUR_AGO}, 0.0),  # not heuristically cacheable
        (404, {"Last-Modified": HOUR_AGO}, 0.0),  # errors: explicit freshness only
        (307, {"Expires": format_http_date(NOW - 10)}, 0.0),  # stale on arrival
        (308, {"Cache-Control": "max-age=60, private"}, 0.0),
        (206, {"Cache-Control": "max-age=60"}, 0.0),  # a part, never kept whole
        (304, {"Cache-Control": "max-age=60"}, 0.0),
        (200, {"Cache-Control": "max-age=60"}, 0.0),  # 200 goes to disk
    ],
)
def test_which_answers_are_kept(status: int, headers: dict[str, str], kept: float) -> None:
    headers = {"Date": format_http_date(NOW), **headers}
    assert f.negative_lifetime(status, {}, headers, NOW, 5.0) == kept


async def _proxy(aiohttp_server: Any, tmp_path: Any, origin: ScriptedOrigin) -> TestServer:
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), auth="none",
                             mode="proxy", signing_keys="")
    return await aiohttp_server(make_app(settings))


async def _ask(s: aiohttp.ClientSession, proxy: TestServer, path: str, method: str = "GET",
               **headers: str) -> tuple[int, bytes, str | None]:
    async with s.request(method, proxy.make_url(path), headers=headers,
                         allow_redirects=False) as r:
        return r.status, await r.read(), r.headers.get("Location")


async def test_a_redirect_is_reused_for_get_head_and_ranges(aiohttp_server: Any,
                                                             tmp_path: Any) -> None:
    origin = ScriptedOrigin()
    origin.scripts["/r"] = Script(b"moved", status=301,
                                  headers={"Cache-Control": "max-age=60", "Location": "/new"})
    proxy = await _proxy(aiohttp_server, tmp_path, origin)
    async with aiohttp.ClientSession() as s:
        assert await _ask(s, proxy, "/r") == (301, b"moved", "/new")
        assert await _ask(s, proxy, "/r") == (301, b"moved", "/new")
        assert await _ask(s, proxy, "/r", "HEAD") == (301, b"", "/new")
        # Range applies to 200 answers (RFC 9110 §14.2): the redirect goes out whole.
        assert await _ask(s, proxy, "/r", Range="bytes=0-1") == (301, b"moved", "/new")
    assert len(origin.seen) == 1


async def test_a_204_without_length_is_reused(aiohttp_server: Any, tmp_path: Any) -> None:
    origin = ScriptedOrigin()
    origin.scripts["/n"] = Script(b"", status=204, headers={"Cache-Control": "max-age=60"},
                                  length=False)
    proxy = await _proxy(aiohttp_server, tmp_path, origin)
    async with aiohttp.ClientSession() as s:
        assert (await _ask(s, proxy, "/n"))[:2] == (204, b"")
        assert (await _ask(s, proxy, "/n"))[:2] == (204, b"")
    assert len(origin.seen) == 1


async def test_a_stale_redirect_is_asked_for_again(aiohttp_server: Any, tmp_path: Any) -> None:
    origin = ScriptedOrigin()
    origin.scripts["/s"] = Script(b"x", status=302,
                                  headers={"Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
                                           "Location": "/elsewhere"})
    proxy = await _proxy(aiohttp_server, tmp_path, origin)
    async with aiohttp.ClientSession() as s:
        assert (await _ask(s, proxy, "/s"))[0] == 302
        assert (await _ask(s, proxy, "/s"))[0] == 302
    assert len(origin.seen) == 2
