"""Cache-Status (RFC 9211) on every answer: the value, pure, and what a proxy says for a
miss, a hit, a revalidation, a pass-through and an unsafe method."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge import cachestatus
from edge.app import make_app
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin


@pytest.mark.parametrize(
    ("result", "kw", "expected"),
    [
        ("hit", {}, "vcdn-edge; hit"),
        ("miss", {"stored": True}, "vcdn-edge; fwd=uri-miss; stored"),
        ("miss", {"had_stale": True, "stored": True}, "vcdn-edge; fwd=stale; stored"),
        ("revalidated", {}, "vcdn-edge; fwd=stale; fwd-status=304"),
        ("pass", {"fwd_status": 404}, "vcdn-edge; fwd=uri-miss; fwd-status=404"),
        ("method", {"fwd_status": 201}, "vcdn-edge; fwd=method; fwd-status=201"),
        ("stale", {}, "vcdn-edge; hit; fwd=stale; detail=stale-if-error"),
        ("none", {"detail": "only-if-cached"}, "vcdn-edge; detail=only-if-cached"),
    ],
)
def test_value(result: str, kw: dict[str, Any], expected: str) -> None:
    assert cachestatus.value(result, **kw) == expected
    assert cachestatus.HIT == cachestatus.value("hit")


def test_entries_are_appended_after_the_parents() -> None:
    assert cachestatus.append("parent; hit", "vcdn-edge; hit") == "parent; hit, vcdn-edge; hit"
    assert cachestatus.append(None, "vcdn-edge; hit") == "vcdn-edge; hit"


async def _get(proxy: TestServer, path: str, method: str = "GET") -> str:
    async with aiohttp.ClientSession() as s, s.request(method, proxy.make_url(path)) as r:
        await r.read()
        return r.headers.get("Cache-Status", "")


async def test_every_answer_says_what_the_cache_did(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    origin = ScriptedOrigin()
    origin.scripts["/a"] = Script(b"a", headers={"Cache-Control": "max-age=60",
                                                 "Cache-Status": "parent; fwd=uri-miss"})
    origin.scripts["/r"] = Script(b"r", headers={"Cache-Control": "max-age=0"}, etag='"1"')
    origin.scripts["/n"] = Script(b"n", headers={"Cache-Control": "no-store",
                                                 "Cache-Status": "parent; fwd=bypass"})
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), auth="none",
                             mode="proxy", signing_keys="")
    proxy = await aiohttp_server(make_app(settings))
    assert await _get(proxy, "/a") == "vcdn-edge; fwd=uri-miss; stored"
    await settle(proxy.app)
    assert await _get(proxy, "/a") == "vcdn-edge; hit"  # the parent's word was for the fill
    assert await _get(proxy, "/r") == "vcdn-edge; fwd=uri-miss; stored"
    await settle(proxy.app)
    assert await _get(proxy, "/r") == "vcdn-edge; fwd=stale; fwd-status=304"
    assert await _get(proxy, "/n") == "parent; fwd=bypass, vcdn-edge; fwd=uri-miss; fwd-status=200"
    assert await _get(proxy, "/missing") == "vcdn-edge; fwd=uri-miss; fwd-status=404"
    assert await _get(proxy, "/a", "POST") == (
        "parent; fwd=uri-miss, vcdn-edge; fwd=method; fwd-status=200"
    )
