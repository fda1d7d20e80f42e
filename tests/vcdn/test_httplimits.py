"""The listener limits of `vcdn.httplimits`, on every kind of vcdn HTTP server.

Each server is its own application started the way its command starts it (real aiohttp
runners on loopback, the edge on its fast-path site), and each limit is exercised with
raw sockets: heads too large, bodies too large, heads and bodies dribbled, idle keep-alive
connections, connections over the cap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vcdn.httplimits import HttpLimits

#: Small limits, so that each attack is over in a fraction of a second.
LIMITS: dict[str, Any] = {
    "max_body_bytes": 4096,
    "header_timeout": 0.6,
    "body_timeout": 0.6,
    "keepalive_timeout": 0.6,
    "max_connections": 3,
}
SLACK = 3.0  # seconds beyond a timeout that a loaded 2-core machine may take

Server = Callable[[Path, dict[str, Any]], Awaitable[tuple[web.AppRunner, str]]]


async def _origin(tmp: Path, kw: dict[str, Any]) -> tuple[web.AppRunner, str]:
    from origin.content.app import hit_answer, make_app
    from origin.content.settings import OriginSettings
    from vcdn.httpserve.server import start

    # The listener lets an ingest PUT through: the smaller of the two is what is tested.
    settings = OriginSettings(root=tmp, port=0, max_ingest_bytes=1024, **kw)
    app = make_app(settings)
    return await start(
        app, "127.0.0.1", 0, settings.http_limits(), answer=hit_answer(app)
    )


async def _control(tmp: Path, kw: dict[str, Any]) -> tuple[web.AppRunner, str]:
    from origin.control.app import make_app
    from origin.control.settings import ControlSettings
    from vcdn.httpserve.server import start

    settings = ControlSettings(db=f"sqlite:///{tmp / 'control.db'}", port=0, **kw)
    return await start(make_app(settings), "127.0.0.1", 0, settings.http_limits())


async def _steering(tmp: Path, kw: dict[str, Any]) -> tuple[web.AppRunner, str]:
    from steering.http_api import make_app
    from steering.service import Steering
    from steering.settings import SteeringSettings
    from steering.sync import ControlClient
    from vcdn.httpserve.server import start

    settings = SteeringSettings(
        control="http://127.0.0.1:9", zone="cdn.test.", signing_keys="k1:0123456789abcdef", **kw
    )
    session = aiohttp.ClientSession()
    app = make_app(Steering(settings), ControlClient(session, settings.control, ""))

    async def close_session(_app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close_session)
    return await start(app, "127.0.0.1", 0, settings.http_limits())


async def _edge(tmp: Path, kw: dict[str, Any]) -> tuple[web.AppRunner, str]:
    from edge.app import make_app
    from edge.settings import EdgeSettings
    from edge.workers import start_edge

    settings = EdgeSettings(
        cache_dir=tmp / "cache", upstream="http://127.0.0.1:9", auth="none", port=0,
        mode="proxy", **kw,
    )
    return await start_edge(make_app(settings), settings, shutdown_timeout=1.0)


async def _admin(tmp: Path, kw: dict[str, Any]) -> tuple[web.AppRunner, str]:
    from appliance.admin import make_admin_app
    from appliance.daemon import Appliance
    from appliance.settings import ApplianceSettings
    from vcdn.httpserve.server import start

    settings = ApplianceSettings(
        id="a1", site="s1", public_url="http://127.0.0.1:1", cache_dir=tmp / "cache",
        cache_capacity=64 * 1024**2, control_url="http://127.0.0.1:9",
        origin_url="http://127.0.0.1:9", auth="none", **kw,
    )
    appliance = Appliance(settings)
    app = make_admin_app(appliance, "operator-token-0123456789", appliance.edge.registry)
    return await start(app, "127.0.0.1", 0, settings.http_limits())


SERVERS: dict[str, Server] = {
    "origin": _origin,
    "control": _control,
    "steering": _steering,
    "edge": _edge,
    "appliance-admin": _admin,
}


@pytest.fixture(params=sorted(SERVERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def serving(kind: str, tmp: Path, **kw: Any) -> AsyncIterator[tuple[str, int]]:
    runner, url = await SERVERS[kind](tmp, {**LIMITS, **kw})
    host, _, port = url.removeprefix("http://").rpartition(":")
    try:
        yield host, int(port)
    finally:
        await runner.cleanup()


async def _exchange(addr: tuple[str, int], data: bytes) -> bytes:
    """Send `data` and read until the server closes (5 s at most)."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one whole response with a Content-Length; its status."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await asyncio.wait_for(reader.readexactly(int(line.split(b":")[1])), 5)
    return _status(head)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), seconds):
            data += chunk
    except ConnectionError:
        pass
    return data, time.monotonic() - start


async def test_a_790_kb_head_of_many_fields_gets_431(kind: str, tmp_path: Path) -> None:
    """99 fields of 8,000 bytes (each within aiohttp's per-field limit): 431, not served."""
    async with serving(kind, tmp_path) as addr:
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 8000) for i in range(99))
        answer = await _exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n")
        assert _status(answer) == 431, answer[:300]
        assert b"request_header_fields_too_large" in answer


async def test_one_huge_field_or_too_many_fields_get_431(kind: str, tmp_path: Path) -> None:
    """aiohttp's own parser limits (a 20 KB field, 150 fields) answer 431 too."""
    async with serving(kind, tmp_path) as addr:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        many = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
        for request in (big, many + b"\r\n"):
            answer = await _exchange(addr, request)
            assert _status(answer) == 431, answer[:300]


async def test_an_ordinary_request_is_served(kind: str, tmp_path: Path) -> None:
    """The limits let a normal request through (the tests below would pass on a dead port)."""
    async with serving(kind, tmp_path) as addr:
        answer = await _exchange(
            addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert _status(answer) == 200, answer[:300]


async def test_a_body_over_the_limit_gets_413(kind: str, tmp_path: Path) -> None:
    """Content-Length beyond max_body_bytes: 413 before a byte of the body is read."""
    async with serving(kind, tmp_path) as addr:
        answer = await _exchange(
            addr,
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 5000,
        )
        assert _status(answer) == 413, answer[:300]


async def test_a_dribbled_head_is_cut_at_the_header_timeout(kind: str, tmp_path: Path) -> None:
    """Slowloris: a head sent a field every 0.1 s is closed (408) at header_timeout, even
    though the keep-alive timeout is far away."""
    async with serving(kind, tmp_path, keepalive_timeout=30.0) as addr:
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        async def dribble() -> None:
            try:
                for i in range(100):
                    await asyncio.sleep(0.1)
                    writer.write(b"X-Slow-%d: 1\r\n" % i)
                    await writer.drain()
            except ConnectionError:
                pass

        task = asyncio.create_task(dribble())
        data, took = await _closed_within(reader, LIMITS["header_timeout"] + SLACK)
        task.cancel()
        writer.close()
        assert took < LIMITS["header_timeout"] + SLACK
        assert data == b"" or _status(data) == 408, data[:200]


async def test_a_dribbled_body_is_cut_at_the_body_timeout(kind: str, tmp_path: Path) -> None:
    """A POST whose body comes a byte every 0.1 s is closed at body_timeout (plus the
    handler's own time), whatever the route does with the body."""
    async with serving(kind, tmp_path, keepalive_timeout=30.0) as addr:
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"POST /api/v1/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")

        async def dribble() -> None:
            try:
                for _ in range(1000):
                    await asyncio.sleep(0.1)
                    writer.write(b"a")
                    await writer.drain()
            except ConnectionError:
                pass

        task = asyncio.create_task(dribble())
        data, took = await _closed_within(reader, LIMITS["body_timeout"] + SLACK)
        task.cancel()
        writer.close()
        assert took < LIMITS["body_timeout"] + SLACK, data[:200]


async def test_an_idle_keepalive_connection_is_closed(kind: str, tmp_path: Path) -> None:
    """After an answer, a connection that sends nothing is closed at keepalive_timeout."""
    async with serving(kind, tmp_path, header_timeout=30.0) as addr:
        reader, writer = await asyncio.open_connection(*addr)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _response(reader) == 200
        start = time.monotonic()
        await _closed_within(reader, LIMITS["keepalive_timeout"] + SLACK)
        writer.close()
        assert time.monotonic() - start < LIMITS["keepalive_timeout"] + SLACK


async def test_connections_over_the_cap_are_closed(kind: str, tmp_path: Path) -> None:
    """With max_connections = 3, a fourth connection is closed unanswered; the held ones
    still work."""
    async with serving(kind, tmp_path, keepalive_timeout=30.0, header_timeout=30.0) as addr:
        held = [await asyncio.open_connection(*addr) for _ in range(3)]
        for reader, writer in held:  # each is accepted and counted before the next
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await _response(reader) == 200
        answer = await _exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer == b""
        reader, writer = held[0]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await _response(reader) == 200
        for _, w in held:
            w.close()


def test_limits_are_checked() -> None:
    """A zero or negative limit stops start-up with the setting's name."""
    with pytest.raises(ValueError, match="body_timeout"):
        HttpLimits(body_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        HttpLimits(max_connections=0)
