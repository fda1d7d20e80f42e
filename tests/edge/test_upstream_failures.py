"""Origin trouble: retries, the circuit breaker, hits that keep serving, fast failures."""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
from aiohttp import web

from edge.app import make_app
from edge.upstream import CircuitBreaker
from tests.edge.conftest import edge_settings, settle, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin


def test_breaker_opens_after_threshold_and_half_opens_once() -> None:
    """Closed until `threshold` failures; open; after reset_after exactly one trial."""
    now = [0.0]
    b = CircuitBreaker(threshold=3, reset_after=5.0, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 5.0
    assert b.allow() and not b.allow()  # one trial only
    b.failure()
    assert b.state == "open"
    now[0] = 10.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


async def test_retries_a_flaky_origin(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 503 then a 200: the client sees the 200 (one retry with backoff)."""
    calls = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            return web.Response(status=503)
        return web.Response(body=b"ok", headers={"Cache-Control": "max-age=60"})

    app = web.Application()
    app.router.add_get("/v/demo/a.m4s", flaky)
    up = await aiohttp_server(app)
    edge = await aiohttp_server(make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/"))))
    async with aiohttp.ClientSession() as s:
        async with s.get(edge.make_url(signed("a.m4s"))) as resp:
            assert resp.status == 200 and await resp.read() == b"ok"
    assert len(calls) == 2


async def test_origin_down_hits_serve_misses_fail_fast(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the origin hanging, cached objects still serve; misses time out (504) until
    the breaker opens, then fail at once (502) without waiting for the read timeout."""
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/a.m4s"] = Script(
        os.urandom(5000), headers={"Cache-Control": "max-age=600"}
    )
    up = await aiohttp_server(origin.app)
    settings = edge_settings(
        tmp_path,
        str(up.make_url("")).rstrip("/"),
        retries=0,
        breaker_threshold=2,
        breaker_reset=60,
        read_timeout=1.0,
    )
    edge = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as s:
        async with s.get(edge.make_url(signed("a.m4s"))) as r:
            assert await r.read() == origin.scripts["/v/demo/a.m4s"].body
        await settle(edge.app)
        origin.hang = True  # accepts, never answers
        for name in ("b", "c"):
            async with s.get(edge.make_url(signed(f"{name}.m4s"))) as r:
                assert r.status == 504
        start = time.monotonic()
        async with s.get(edge.make_url(signed("d.m4s"))) as r:
            assert r.status == 502
        assert time.monotonic() - start < 0.5  # well under the 1 s read timeout
        async with s.get(edge.make_url(signed("a.m4s"))) as r:
            assert r.status == 200
        assert origin.count("/v/demo/d.m4s") == 0


@pytest.mark.parametrize("delay", [1.5])
async def test_slow_origin_times_out_with_504(aiohttp_server, tmp_path, delay: float) -> None:  # type: ignore[no-untyped-def]
    """An origin slower than read_timeout yields 504, not a hung client."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=b"late")

    app = web.Application()
    app.router.add_get("/v/demo/slow.m4s", slow)
    up = await aiohttp_server(app)
    settings = edge_settings(
        tmp_path, str(up.make_url("")).rstrip("/"), read_timeout=0.3, retries=0
    )
    edge = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as s:
        resp = await s.get(edge.make_url(signed("slow.m4s")))
        assert resp.status == 504
