"""An invalidation dooms the fills of its own URL only; a purge dooms every fill under way.

Before, any removal on purpose moved the one purge generation, and every fill that began
before it was thrown away at publish: an unsafe request for one URL (or a Vary variant
replacing a plain answer) made unrelated URLs miss again, at random under load."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.app import make_app
from edge.store import CacheStore, Entry, Purged, object_key
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin


def _stored(store: CacheStore, tmp_path: Path, path: str) -> None:
    src = tmp_path / secrets.token_hex(4)
    src.write_bytes(b"old")
    store.import_file("t", path, src, 3, hashlib.sha256(b"old").hexdigest(),
                      content_type="text/plain")


def _publish(store: CacheStore, path: str, *, generation: int, mark: int) -> Entry:
    """A fill's publish: the part file written, the counters read when it began."""
    key = object_key("t", path)
    part = store.tmp_dir / f"{secrets.token_hex(4)}.part"
    part.write_bytes(b"new")
    draft = Entry(key=key, title="t", path=path, size=3, content_type="text/plain",
                  response_time=time.time(), lifetime=60.0)
    return store.publish(draft, part, generation=generation, mark=mark)


def _began(store: CacheStore, path: str) -> dict[str, int]:
    return {"generation": store.generation.purges(),
            "mark": store.removal_mark(object_key("t", path))}


def test_invalidating_one_url_keeps_other_fills(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", 1024**2)
    _stored(store, tmp_path, "b")
    memory = store.generation.read()
    began = _began(store, "a")
    assert store.remove(object_key("t", "b"))
    assert store.generation.read() != memory  # every worker still drops its RAM copies
    assert _publish(store, "a", **began).key == object_key("t", "a")
    store.close()


def test_invalidating_the_url_being_filled_dooms_its_fill(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", 1024**2)
    _stored(store, tmp_path, "a")
    began = _began(store, "a")
    assert store.remove(object_key("t", "a"))
    with pytest.raises(Purged):
        _publish(store, "a", **began)
    # A fill that began after the invalidation stores what it fetched.
    assert _publish(store, "a", **_began(store, "a")).size == 3
    store.close()


def test_a_purge_dooms_every_fill_under_way(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", 1024**2)
    began = _began(store, "a")
    store.purge(prefix="t/zzz")  # nothing stored there: still a purge
    with pytest.raises(Purged):
        _publish(store, "a", **began)
    store.close()


def test_a_plain_answer_replacing_a_variant_is_no_invalidation(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c", 1024**2)
    _stored(store, tmp_path, "a")
    began = _began(store, "a")
    assert store.remove(object_key("t", "a"), invalidate=False)
    assert _publish(store, "a", **began).size == 3
    store.close()


async def test_post_elsewhere_during_a_fill_keeps_it(aiohttp_server: Any, tmp_path: Path) -> None:
    """Through the proxy: a POST that invalidates a stored URL while another URL's fill is
    under way; a request arriving after it still joins that fill, and the URL is stored
    (before: both fetched it again)."""
    origin = ScriptedOrigin()
    cc = {"Cache-Control": "max-age=60"}
    origin.scripts["/slow"] = Script(b"s" * 1000, headers=cc, pieces=2, delay=0.3)
    origin.scripts["/b"] = Script(b"b", headers=cc)
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), auth="none",
                             mode="proxy", signing_keys="")
    proxy = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.make_url("/b")) as r:
            assert r.status == 200
        await settle(proxy.app)

        async def slow() -> bytes:
            async with s.get(proxy.make_url("/slow")) as r:
                return await r.read()

        task = asyncio.create_task(slow())
        for _ in range(1000):  # until the fill has asked the origin (5 s at most)
            if origin.count("/slow"):
                break
            await asyncio.sleep(0.005)
        async with s.post(proxy.make_url("/b"), data=b"x") as r:
            assert r.status == 200
        joining = asyncio.create_task(slow())  # still joins the fill under way
        assert await task == b"s" * 1000
        assert await joining == b"s" * 1000
        await settle(proxy.app)
        async with s.get(proxy.make_url("/slow")) as r:
            assert await r.read() == b"s" * 1000
            assert "hit" in r.headers.get("Cache-Status", "")
    assert origin.count("/slow") == 1
    assert origin.count("/b") == 1


async def test_post_elsewhere_keeps_kept_answers(aiohttp_server: Any, tmp_path: Path) -> None:
    """A kept non-200 answer (edge.negative) is this worker's only copy: an invalidation
    of another URL must not drop it (before: every one dropped them all)."""
    origin = ScriptedOrigin()
    cc = {"Cache-Control": "max-age=60"}
    origin.scripts["/gone"] = Script(b"gone", status=404, headers=cc)
    origin.scripts["/moved"] = Script(b"moved", status=301, headers={**cc, "Location": "/x"})
    origin.scripts["/b"] = Script(b"b", headers=cc)
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), auth="none",
                             mode="proxy", signing_keys="")
    proxy = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as s:
        for path in ("/b", "/gone", "/moved"):
            async with s.get(proxy.make_url(path), allow_redirects=False) as r:
                await r.read()
        await settle(proxy.app)
        async with s.post(proxy.make_url("/b"), data=b"x") as r:
            assert r.status == 200
        for path, status in (("/gone", 404), ("/moved", 301), ("/b", 200)):
            async with s.get(proxy.make_url(path), allow_redirects=False) as r:
                assert r.status == status
                await r.read()
    assert origin.count("/gone") == origin.count("/moved") == 1
    assert origin.count("/b") == 2  # invalidated (RFC 9111 §4.4)
