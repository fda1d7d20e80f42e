"""Proxy mode's upstream requests: the first requester's fields on a fill, no second ask
for an answer the origin gave, and a keep-alive connection the origin dropped as it was
reused is asked again on a new one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge import targeted
from edge.app import make_app
from tests.edge.conftest import edge_settings, settle
from tests.edge.scripted_origin import Script, ScriptedOrigin


async def _proxy(aiohttp_server: Any, tmp_path: Path, upstream: str, **kw: Any) -> TestServer:
    settings = edge_settings(tmp_path, upstream, auth="none", mode="proxy", signing_keys="", **kw)
    return await aiohttp_server(make_app(settings))


async def _get(proxy: TestServer, path: str, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(proxy.make_url(path), headers=headers) as r:
        return r.status, await r.read()


async def test_fill_carries_the_clients_end_to_end_fields(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Before: a fill sent only Via (and the cache's validators), so an origin that reads
    the request (a test id, a language) could not tell what was asked."""
    origin = ScriptedOrigin()
    origin.scripts["/a"] = Script(b"hello", headers={"Cache-Control": "max-age=60"})
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, str(up.make_url("")).rstrip("/"))
    status, body = await _get(
        proxy, "/a", **{"X-Test": "7", "Accept-Language": "de", "If-None-Match": '"old"',
                        "Range": "bytes=0-1"},
    )
    assert status == 206 and body == b"he"
    await settle(proxy.app)
    fills = [s for s in origin.seen if s.path == "/a" and "Range" not in s.headers]
    assert fills, [dict(s.headers) for s in origin.seen]
    sent = fills[-1].headers
    assert sent["X-Test"] == "7" and sent["Accept-Language"] == "de"
    assert "If-None-Match" not in sent
    assert "vcdn-edge" in sent["Via"]


async def test_proxy_mode_does_not_repeat_a_5xx(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 503 is the origin's answer to one client's request: relayed, not asked again."""
    origin = ScriptedOrigin()
    origin.scripts["/busy"] = Script(b"no", status=503)
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, str(up.make_url("")).rstrip("/"), retries=2)
    assert (await _get(proxy, "/busy"))[0] == 503
    assert origin.count("/busy") == 1


@contextlib.asynccontextmanager
async def _one_request_per_connection() -> AsyncIterator[tuple[str, list[int]]]:
    """An origin that answers one request per connection with keep-alive framing and
    drops the connection, unanswered, when a second request arrives on it."""
    answered: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            answered.append(1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         b"Cache-Control: no-store\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", answered
    finally:
        server.close()
        await server.wait_closed()


async def test_a_dropped_reused_connection_is_asked_again(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RFC 9112 §9.3.1: a close racing the reuse of an idle connection is no failure of
    the origin; before, the second client got 502 (and five of them opened the breaker)."""
    async with _one_request_per_connection() as (base, answered):
        proxy = await _proxy(aiohttp_server, tmp_path, base, retries=0, breaker_threshold=1)
        for _ in range(4):
            assert await _get(proxy, "/x") == (200, b"ok")
        assert len(answered) == 4


@pytest.mark.parametrize(("cc", "fetches"), [("no-cache", 2), ("max-age=60", 1)])
async def test_a_fill_in_flight_is_shared_only_when_fresh_for_the_joiner(  # type: ignore[no-untyped-def]
    aiohttp_server, tmp_path, cc: str, fetches: int
) -> None:
    """A request arriving while an earlier request's fill still streams may share it
    only if that response may answer it (§4); before, a ``no-cache`` response being
    written was served to the next client unvalidated."""
    origin = ScriptedOrigin()
    origin.scripts["/slow"] = Script(
        b"x" * 50_000, headers={"Cache-Control": cc}, pieces=10, delay=0.05
    )
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, str(up.make_url("")).rstrip("/"))
    first = asyncio.create_task(_get(proxy, "/slow"))
    await asyncio.sleep(0.2)  # the fill has its head and is writing the body (0.5 s)
    assert origin.count("/slow") == 1 and not first.done()
    second = await _get(proxy, "/slow")
    assert (await first)[1] == second[1] == b"x" * 50_000
    assert origin.count("/slow") == fetches


async def test_fills_announce_the_surrogate_capability(aiohttp_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Edge Architecture §3: the origin learns our device name for Surrogate-Control."""
    origin = ScriptedOrigin()
    origin.scripts["/a"] = Script(b"a", headers={"Cache-Control": "max-age=60"})
    up = await aiohttp_server(origin.app)
    proxy = await _proxy(aiohttp_server, tmp_path, str(up.make_url("")).rstrip("/"))
    await _get(proxy, "/a", **{"Surrogate-Capability": 'inner="Surrogate/1.0"'})
    assert origin.seen[0].headers["Surrogate-Capability"] == (
        f'inner="Surrogate/1.0", {targeted.CAPABILITY}'
    )


async def test_a_small_put_survives_a_dropped_reused_connection(  # type: ignore[no-untyped-def]
    aiohttp_server, tmp_path
) -> None:
    """A small declared body is buffered, so an idempotent PUT survives the same race
    (before: streamed bodies were never sent twice, and the PUT got 502)."""
    async with _one_request_per_connection() as (base, answered):
        proxy = await _proxy(aiohttp_server, tmp_path, base, retries=0, breaker_threshold=1)
        assert await _get(proxy, "/x") == (200, b"ok")
        async with aiohttp.ClientSession() as s:
            async with s.put(proxy.make_url("/x"), data=b'{"a": 1}') as r:
                assert (r.status, await r.read()) == (200, b"ok")
        assert len(answered) == 2
