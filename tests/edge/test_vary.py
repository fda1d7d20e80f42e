"""Vary variants: secondary keys, pure (edge.vary), and a proxy that stores and selects
them, against a real origin on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge import vary
from edge.app import EDGE_KEY, make_app
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin


def test_fields_are_sorted_lowercase_and_star_is_special() -> None:
    assert vary.fields("Foo, bar ,FOO") == ("bar", "foo")
    assert vary.fields("Foo, *") == ("*",)
    assert vary.fields("") == () and vary.fields(None) == ()


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("accept-encoding", "gzip, br", "br,gzip;q=1"),
        ("accept-encoding", "gzip, identity;q=0", "gzip"),
        ("accept-language", "en-US, en;q=0.5", "en-us,en;q=0.5"),
        ("foo", "a ,  b", "a,b"),
    ],
)
def test_equivalent_spellings_share_a_variant(name: str, a: str, b: str) -> None:
    assert vary.normalise(name, a) == vary.normalise(name, b)


def test_absent_and_empty_fields_are_different_variants() -> None:
    assert vary.secondary(("foo",), {}) != vary.secondary(("foo",), {"Foo": ""})


def test_storage_key_and_selection() -> None:
    key = vary.storage_key("/a", "Foo, Bar", {"Foo": "1", "Bar": "2"})
    assert key is not None and key.startswith("/a\n")
    assert vary.primary_of(key) == "/a"
    assert vary.selects(key, "Foo, Bar", {"bar": "2", "foo": "1"})
    assert not vary.selects(key, "Foo, Bar", {"Foo": "1"})
    assert vary.storage_key("/a", None, {}) == "/a"
    assert vary.storage_key("/a", "*", {}) is None
    assert vary.selects("/a", None, {"Foo": "9"})


async def _get(proxy: TestServer, path: str, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(proxy.make_url(path), headers=headers) as r:
        return r.status, await r.read()


async def _proxy(aiohttp_server: Any, tmp_path: Any, origin: ScriptedOrigin) -> TestServer:
    up = await aiohttp_server(origin.app)
    settings = edge_settings(tmp_path, str(up.make_url("")).rstrip("/"), auth="none",
                             mode="proxy", signing_keys="")
    return await aiohttp_server(make_app(settings))


async def test_variants_are_stored_and_selected(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before: a response with Vary (other than Accept-Encoding) was never stored."""
    origin = ScriptedOrigin()
    origin.scripts["/v"] = Script(b"en", headers={"Cache-Control": "max-age=60",
                                                  "Vary": "Accept-Language"})
    proxy = await _proxy(aiohttp_server, tmp_path, origin)
    assert await _get(proxy, "/v", **{"Accept-Language": "en"}) == (200, b"en")
    await settle(proxy.app)
    origin.scripts["/v"].body = b"de"
    assert await _get(proxy, "/v", **{"Accept-Language": "de"}) == (200, b"de")
    await settle(proxy.app)
    assert await _get(proxy, "/v", **{"Accept-Language": "en"}) == (200, b"en")
    assert await _get(proxy, "/v", **{"Accept-Language": "DE"}) == (200, b"de")
    assert origin.count("/v") == 2
    assert (await _get(proxy, "/v"))[1] == b"de"  # no Accept-Language: a third variant
    assert origin.count("/v") == 3


async def test_unsafe_methods_and_plain_answers_replace_variants(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    origin = ScriptedOrigin()
    origin.scripts["/v"] = Script(b"1", headers={"Cache-Control": "max-age=60", "Vary": "Foo"})
    proxy = await _proxy(aiohttp_server, tmp_path, origin)
    await _get(proxy, "/v", Foo="a")
    await settle(proxy.app)
    async with aiohttp.ClientSession() as s, s.post(proxy.make_url("/v"), data=b"x") as r:
        assert r.status == 200
    origin.scripts["/v"].body = b"2"
    assert await _get(proxy, "/v", Foo="a") == (200, b"2")  # invalidated (§4.4)
    await settle(proxy.app)
    store = proxy.app[EDGE_KEY].store
    assert len(store.variants("/v")) == 1
    # The URL stops varying: the plain answer replaces the variant.
    origin.scripts["/v"] = Script(b"3", headers={"Cache-Control": "max-age=0"})
    assert await _get(proxy, "/v", Foo="b") == (200, b"3")
    await settle(proxy.app)
    assert store.variants("/v") == []


def test_removing_no_variants_is_no_purge(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An unsafe method on a URL without variants must not bump the purge generation:
    before, every PUT made every worker drop its RAM tier and unshare its fills."""
    from edge.store import CacheStore

    store = CacheStore(tmp_path / "c", 1024**2)
    before = store.generation.read()
    assert store.remove_variants("/nothing") == 0
    assert store.generation.read() == before
    store.close()
