"""Peers of the site come first: asked only for what they already hold (only-if-cached,
with a token of our own), and the origin only when no peer has the object."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp

from edge.app import make_app
from tests.edge.conftest import edge_settings, settle, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin


async def test_peer_hit_spares_the_origin(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(300_000)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/a.m4s"] = Script(data, headers={"Cache-Control": "max-age=600"})
    origin.scripts["/v/demo/b.m4s"] = Script(data[:1000], headers={"Cache-Control": "max-age=600"})
    up = await aiohttp_server(origin.app)
    upstream = str(up.make_url("")).rstrip("/")
    peer = await aiohttp_server(make_app(edge_settings(tmp_path / "peer", upstream)))
    edge = await aiohttp_server(
        make_app(
            edge_settings(tmp_path / "edge", upstream, peers=(str(peer.make_url("")).rstrip("/"),))
        )
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(peer.make_url(signed("a.m4s"))) as r:
            assert await r.read() == data
        await settle(peer.app)
        async with s.get(edge.make_url(signed("a.m4s"))) as r:
            assert (r.status, await r.read()) == (200, data)
        assert origin.count("/v/demo/a.m4s") == 1  # the peer's own fill only
        # Not on the peer: the peer answers 504 (only-if-cached), never fills for us.
        async with s.get(edge.make_url(signed("b.m4s"))) as r:
            assert (r.status, await r.read()) == (200, data[:1000])
        assert origin.count("/v/demo/b.m4s") == 1
        async with s.get(peer.make_url("/metrics")) as r:
            text = await r.text()
        assert 'vcdn_edge_fills_total{source="origin"} 1.0' in text
        want = (
            'vcdn_edge_fills_total{source="peer"} 1.0',
            'vcdn_edge_fills_total{source="origin"} 1.0',
        )
        for _ in range(50):  # fills are counted once published, just after the last byte
            async with s.get(edge.make_url("/metrics")) as r:
                text = await r.text()
            if all(w in text for w in want):
                break
            await asyncio.sleep(0.02)
        assert all(w in text for w in want), text


async def test_only_if_cached_miss_is_504(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """RFC 9111 §5.2.1.7: only-if-cached on a miss answers 504 without going upstream."""
    origin = ScriptedOrigin()
    up = await aiohttp_server(origin.app)
    edge = await aiohttp_server(make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/"))))
    async with aiohttp.ClientSession() as s:
        async with s.get(
            edge.make_url(signed("x.m4s")), headers={"Cache-Control": "only-if-cached"}
        ) as r:
            assert r.status == 504
    assert origin.seen == []
