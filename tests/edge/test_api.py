"""The in-process API the appliance drives: verified imports served as hits, pins, purge,
per-title counters and hit ratio, draining that keeps serving."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import aiohttp

from edge.app import EDGE_KEY, make_app
from tests.edge.conftest import edge_settings, signed
from tests.edge.scripted_origin import ScriptedOrigin


async def test_imported_objects_are_hits_without_upstream(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    origin = ScriptedOrigin()
    up = await aiohttp_server(origin.app)
    server = await aiohttp_server(
        make_app(edge_settings(tmp_path, str(up.make_url("")).rstrip("/")))
    )
    edge = server.app[EDGE_KEY]
    data = os.urandom(70_000)
    src = tmp_path / "seg.m4s"
    src.write_bytes(data)
    await edge.run(
        edge.store.import_file,
        "demo",
        "720p/seg_00001.m4s",
        src,
        len(data),
        hashlib.sha256(data).hexdigest(),
        content_type="video/mp4",
        pinned=True,
    )
    assert edge.store.has("demo", "720p/seg_00001.m4s")
    edge.draining = True  # draining still serves
    async with aiohttp.ClientSession() as s:
        async with s.get(server.make_url(signed("720p/seg_00001.m4s"))) as r:
            assert (r.status, await r.read()) == (200, data)
            assert r.headers["Content-Type"] == "video/mp4"
            assert "immutable" in r.headers["Cache-Control"]
        async with s.get(server.make_url("/healthz")) as r:
            assert (await r.json())["draining"] is True
    assert origin.seen == []
    assert edge.stats.take_title_requests() == {"demo": 1}
    assert edge.stats.take_title_requests() == {}
    assert edge.stats.hit_ratio == 1.0
    assert await edge.run(edge.store.purge, title="demo") == 1
    assert not edge.store.has("demo", "720p/seg_00001.m4s")
