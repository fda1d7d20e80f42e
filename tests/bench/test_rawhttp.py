"""bench.llhls.rawhttp, the simulated players' HTTP/1.1 client, against a real aiohttp
server on loopback: Content-Length and chunked bodies, the first-byte callback of a body
still being written, keep-alive reuse, Connection: close, and a server that goes away."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from bench.llhls.rawhttp import Client, HttpError


@pytest.fixture
async def server(aiohttp_server: Any) -> Any:
    peers: list[Any] = []

    async def whole(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=b"x" * 5000)

    async def growing(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"first")
        await asyncio.sleep(0.3)
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    async def closing(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/whole", whole)
    app.router.add_get("/growing", growing)
    app.router.add_get("/closing", closing)
    srv = await aiohttp_server(app)
    srv.peers = peers
    return srv


async def test_bodies_first_bytes_and_keep_alive(server: Any) -> None:
    client = Client("127.0.0.1", server.port, 5.0)
    assert await client.get("/whole") == (200, b"x" * 5000)
    assert await client.get("/whole") == (200, b"x" * 5000)
    assert server.peers[0] == server.peers[1]  # one connection, kept alive
    loop = asyncio.get_running_loop()
    firsts: list[float] = []
    started = loop.time()
    status, body = await client.get("/growing", lambda: firsts.append(loop.time()))
    assert (status, body) == (200, b"firstsecond")
    assert len(firsts) == 1 and firsts[0] - started < 0.25  # before the second piece
    assert await client.get("/closing") == (200, b"bye")
    assert await client.get("/missing") == (404, b"404: Not Found")
    client.close()


async def test_a_server_that_went_away_is_an_error(server: Any) -> None:
    client = Client("127.0.0.1", server.port, 1.0)
    assert (await client.get("/whole"))[0] == 200
    await server.close()
    with pytest.raises(HttpError):
        await client.get("/whole")
    with pytest.raises(HttpError):
        await client.get("/whole")
