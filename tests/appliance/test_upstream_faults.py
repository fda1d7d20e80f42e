"""Upstream faults, for real over loopback: origin down → peers; neither → reported, still
serving; a corrupt file → rejected, counted, fetched from the next source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    Running,
    Served,
    api,
    appliance_toml,
    blob,
    enroll,
    make_popular,
    make_title,
    publish,
    run_appliance,
    serve_app,
    signed,
    until,
)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def start(tmp_path: Path, name: str, control: Served, origin_url: str, **extra: object
                ) -> Running:
    if name != "a1":  # a1 is enrolled with the control; any other box is enrolled here
        extra.setdefault("control_token", await enroll(control.url, name))
    path = appliance_toml(
        tmp_path / f"{name}.toml", id=name, site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / name, control_url=control.url, origin_url=origin_url, **extra,
    )
    return await run_appliance(settings_mod.load(path, env={}))


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.read()


async def test_origin_down_fills_from_peer_and_neither_reports_failure_but_keeps_serving(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    one = {"a.ts": blob(40_000, 1), "b.ts": blob(30_000, 2)}
    await publish(control.url, make_title(origin_root, "one", one))
    await make_popular(control.url, {"one": 5})
    a1 = await start(tmp_path, "a1", control, origin.url)
    a2 = None
    try:
        await until(lambda: a1.appliance.status.fill.titles_complete == 1)
        dead_origin = f"http://127.0.0.1:{free_port()}"
        # a2's origin is unreachable; the manifest lists a1 (healthy, same site) as its peer.
        await until(lambda: a1.appliance.status.last_heartbeat)
        a2 = await start(tmp_path, "a2", control, dead_origin)
        app2 = a2.appliance
        await until(lambda: app2.status.fill.titles_complete == 1)
        assert app2.status.fill.from_peers == 2 and app2.status.fill.from_origin == 0
        reg = app2.edge.registry
        assert sample(reg, "vcdn_appliance_fill_files_total", source="peer") == 2
        assert sample(reg, "vcdn_appliance_fill_bytes_total", source="peer") == 70_000
        status, body = await fetch(f"{a2.urls['public']}/s/{signed('one')}/one/a.ts")
        assert (status, body) == (200, one["a.ts"])

        # Now a new title, while the only peer is gone and the origin is still dead.
        await a1.stop()
        a1 = None  # type: ignore[assignment]
        two = {"c.ts": blob(10_000, 3)}
        await publish(control.url, make_title(origin_root, "two", two))
        await make_popular(control.url, {"two": 50})
        app2.fill_now()
        await until(lambda: "two" in app2.status.fill.last_error, within=15)
        assert not app2.edge.store.has("two", "c.ts")
        assert sample(reg, "vcdn_appliance_fill_title_failures_total") >= 1
        assert app2.status.upstream["origin"].ok is False
        async with aiohttp.ClientSession() as session:
            beat = await app2.collect(session)
        assert beat.checks["upstream"].ok is False
        # ... and it still serves what it holds.
        status, body = await fetch(f"{a2.urls['public']}/s/{signed('one')}/one/b.ts")
        assert (status, body) == (200, one["b.ts"])
    finally:
        for running in (a1, a2):
            if running is not None:
                await running.stop()


async def test_corrupt_file_from_a_peer_is_rejected_counted_and_fetched_from_origin(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path
) -> None:
    files = {"seg.ts": blob(20_000, 7)}
    await publish(control.url, make_title(origin_root, "rot", files))
    await make_popular(control.url, {"rot": 5})
    hits: list[str] = []

    async def corrupt(request: web.Request) -> web.Response:
        """A peer that answers with one wrong byte (a bad disk, a buggy proxy)."""
        hits.append(request.path)
        data = bytearray(files["seg.ts"])
        data[1234] ^= 0xFF
        return web.Response(body=bytes(data), content_type="video/mp2t")

    bad = web.Application()
    bad.router.add_get("/{tail:.*}", corrupt)
    bad_peer = await serve_app(bad)
    # Register the bad peer in the same site and keep it healthy, so the manifest lists it.
    reg = {"id": "bad", "site": "s1", "public_url": bad_peer.url, "capacity_bytes": 10**9}
    bad_token = await enroll(control.url, "bad")
    await api(control.url, "POST", "/appliances", bad_token, reg)
    await api(control.url, "PUT", "/appliances/bad/heartbeat", bad_token, {"state": "healthy"})
    a1 = await start(tmp_path, "a1", control, origin.url, heartbeat_interval=5.0)
    try:
        app = a1.appliance
        await until(lambda: app.status.fill.titles_complete == 1)
        assert hits and hits[0].startswith("/s/"), "the peer was asked first, with a token"
        reg_ = app.edge.registry
        assert sample(reg_, "vcdn_appliance_fill_rejected_total", source="peer",
                      reason="integrity") == 1
        assert sample(reg_, "vcdn_appliance_fill_files_total", source="origin") == 1
        status, body = await fetch(f"{a1.urls['public']}/s/{signed('rot')}/rot/seg.ts")
        assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(
            files["seg.ts"]).digest()
        assert not list((tmp_path / "a1" / "staging").rglob("*.part"))
    finally:
        await a1.stop()
        await bad_peer.stop()
