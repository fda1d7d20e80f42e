"""Peers are not open proxies: a peer request (signed, `Cache-Control: only-if-cached`)
for something the appliance does not hold is answered 504 without any upstream fetch
(RFC 9111 §5.2.1.7), and a caller without a valid token gets 403."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    Served,
    appliance_toml,
    run_appliance,
    serve_app,
    signed,
)
from vcdn.peering import HEADERS as PEER_HEADERS


async def test_peer_requests_never_reach_upstream_and_strangers_are_refused(
    tmp_path: Path, control: Served
) -> None:
    upstream_hits: list[str] = []

    async def origin(request: web.Request) -> web.Response:
        if request.path != "/healthz":  # the heartbeat's reachability probe
            upstream_hits.append(request.path)
        return web.Response(body=b"x" * 100)

    app = web.Application()
    app.router.add_get("/{tail:.*}", origin)
    counting_origin = await serve_app(app)
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "c", control_url=control.url, origin_url=counting_origin.url,
        fill_window="00:00-00:01",
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    base = running.urls["public"]
    try:
        async with aiohttp.ClientSession() as s:
            url = f"{base}/s/{signed('nothere')}/nothere/seg.ts"
            async with s.get(url, headers=PEER_HEADERS) as resp:
                assert resp.status == 504
            async with s.get(f"{base}/v/nothere/seg.ts", headers=PEER_HEADERS) as resp:
                assert resp.status in (403, 404)
            bad = signed("nothere", "k1:another-secret-0123456789")
            async with s.get(f"{base}/s/{bad}/nothere/seg.ts") as resp:
                assert resp.status == 403
            assert upstream_hits == []
            # A client's ordinary miss (valid token, no only-if-cached) does fill, once.
            async with s.get(url) as resp:
                assert resp.status == 200
            assert upstream_hits == ["/v/nothere/seg.ts"]
    finally:
        await running.stop()
        await counting_origin.stop()
