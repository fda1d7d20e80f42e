"""`vcdn.control_client.ControlClient` against the real control app (both stores), and its
error mapping against small in-process servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from tests.origin.control.conftest import (
    APPLIANCE,
    OPERATOR,
    PACKAGER,
    STEERING,
    Api,
    enroll,
    manifest,
    registration,
)
from vcdn.control_client import ControlClient
from vcdn.errors import (
    ClientError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from vcdn.schemas import Heartbeat, Registration, TitleManifest, decode


def base(api: Api) -> str:
    return str(api.client.make_url("")).rstrip("/")


async def test_client_round_trips_every_call(api: Api) -> None:
    m = decode(TitleManifest, manifest("t1", [100, 50]))
    async with ControlClient(base(api), PACKAGER) as packager:
        assert await packager.register_title(m) is True
        assert await packager.register_title(m) is False
        assert await packager.get_title("t1") == m
        [summary] = await packager.list_titles()
        assert summary.title == "t1" and summary.total_bytes == 150
    await enroll(api, "a1")
    async with ControlClient(base(api), APPLIANCE) as appliance:
        view = await appliance.register_appliance(
            decode(Registration, registration("a1", capacity=1000))
        )
        assert view.id == "a1" and view.state == "down"
        ack = await appliance.heartbeat("a1", Heartbeat(state="healthy", title_requests={"t1": 4}))
        assert ack.state == "healthy" and ack.heartbeat_interval == api.settings.heartbeat_interval
        fill = await appliance.fill_manifest("a1")
        assert [t.title for t in fill.titles] == ["t1"] and fill.titles[0].bytes == 150
    async with ControlClient(base(api), STEERING) as steering:
        listing = await steering.list_appliances()
        assert [(a.id, a.state) for a in listing.appliances] == [("a1", "healthy")]
        assert listing.generated_at == api.clock()
        assert [s["title"] for s in await steering.popularity("s1")] == ["t1"]


@pytest.mark.parametrize(
    ("token", "call", "error"),
    [
        (None, "list_titles", Unauthorized),
        ("nonsense-token-0123456789", "list_titles", Unauthorized),
        (STEERING, "register_title", Forbidden),
        (OPERATOR, "get_title", NotFound),
        (OPERATOR, "bad_registration", ClientError),
        (PACKAGER, "huge_title", PayloadTooLarge),
    ],
)
async def test_client_maps_api_errors_to_vcdn_errors(
    api: Api, token: str | None, call: str, error: type[Exception]
) -> None:
    async with ControlClient(base(api), token) as client:
        calls: dict[str, Any] = {
            "list_titles": client.list_titles,
            "register_title": lambda: client.register_title(
                decode(TitleManifest, manifest("t", [1]))
            ),
            "get_title": lambda: client.get_title("missing"),
            "bad_registration": lambda: client.register_appliance(
                Registration(id="a1", site="s1", public_url="gopher://x", capacity_bytes=1)
            ),
            "huge_title": lambda: client.register_title(
                decode(TitleManifest, manifest("t", [1] * 10_000))
            ),
        }
        with pytest.raises(error) as info:
            await calls[call]()
    assert "Control API" in str(info.value)


async def _serve(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_client_5xx_is_an_upstream_status(aiohttp_server: Any) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": "unavailable", "detail": "db down"}, status=503)

    async with ControlClient(await _serve(aiohttp_server, broken), "t") as client:
        with pytest.raises(UpstreamStatus) as info:
            await client.list_appliances()
    assert info.value.status == 503 and "db down" in str(info.value)


async def test_client_malformed_answers_are_upstream_errors(aiohttp_server: Any) -> None:
    async def liar(request: web.Request) -> web.Response:
        if request.path.endswith("/appliances"):
            return web.json_response({"appliances": [{"id": 1}]})
        return web.Response(text="<html>oops</html>")

    async with ControlClient(await _serve(aiohttp_server, liar), "t") as client:
        with pytest.raises(UpstreamError, match="malformed"):
            await client.list_appliances()
        with pytest.raises(UpstreamError, match="without JSON"):
            await client.fill_manifest("a1")


async def test_client_timeout_and_refused_connection(aiohttp_server: Any) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async with ControlClient(await _serve(aiohttp_server, slow), "t", timeout=0.2) as client:
        with pytest.raises(UpstreamTimeout):
            await client.list_titles()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        async with ControlClient(f"http://127.0.0.1:{port}", "t") as client:
            with pytest.raises(UpstreamError, match="Cannot reach"):
                await client.list_titles()


def test_client_reads_its_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCDN_CONTROL_TOKEN", "from-env-token")
    client = ControlClient.from_env("http://127.0.0.1:1/")
    assert client.base_url == "http://127.0.0.1:1"
    assert client._headers == {"Authorization": "Bearer from-env-token"}


def refused_url() -> str:
    """A loopback URL nothing listens on (a port bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_a_dead_replica_is_skipped_and_the_next_answers(api: Api) -> None:
    dead = refused_url()
    async with ControlClient([dead, base(api)], OPERATOR) as client:
        assert await client.list_titles() == []
        assert client.base_url == base(api) and client.endpoints.failovers == 1
        assert client.endpoints.reachable() == 1
        # In backoff, the dead one is no longer asked first.
        assert client.endpoints.order()[0] == 1
        assert await client.list_titles() == []
        assert client.endpoints.failovers == 1


async def test_every_replica_down_raises_the_last_error() -> None:
    urls = [refused_url(), refused_url()]
    async with ControlClient(",".join(urls), OPERATOR, timeout=2.0) as client:
        with pytest.raises(UpstreamError, match="Cannot reach"):
            await client.list_titles()
        assert client.endpoints.reachable() == 0
        # Both in backoff: a request still tries them (soonest retry first), never refuses.
        with pytest.raises(UpstreamError):
            await client.list_titles()


async def test_a_4xx_is_an_answer_not_a_reason_to_fail_over(aiohttp_server: Any) -> None:
    asked: list[str] = []

    def app(name: str, status: int) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            asked.append(name)
            return web.json_response({"detail": "no such title"}, status=status)

        a = web.Application()
        a.router.add_get("/api/v1/titles/{id}", handler)
        return a

    first = await aiohttp_server(app("first", 404))
    second = await aiohttp_server(app("second", 200))
    urls = [str(first.make_url("")).rstrip("/"), str(second.make_url("")).rstrip("/")]
    async with ControlClient(urls, OPERATOR) as client:
        with pytest.raises(NotFound, match="no such title"):
            await client.get_title("t1")
    assert asked == ["first"]


def test_control_urls_from_flags_lists_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vcdn.control_client import URLS_ENV, control_urls

    assert control_urls(["http://a:1", "http://b:2/,http://a:1"]) == ["http://a:1", "http://b:2"]
    monkeypatch.setenv(URLS_ENV, " http://c:3 , https://d:4/ ")
    assert control_urls(None) == ["http://c:3", "https://d:4"]
    assert control_urls("http://e:5") == ["http://e:5"]  # flags win over the environment
    with pytest.raises(ClientError, match="must start with http"):
        control_urls("ftp://x")
    with pytest.raises(ClientError, match="At least one"):
        ControlClient([], None)


async def test_client_reads_the_appliance_list_a_page_at_a_time(api: Api) -> None:
    ids = [f"a{i:02d}" for i in range(7)]
    for i in ids:
        await api.call("POST", "/api/v1/appliances", json=registration(i))
    async with ControlClient(base(api), STEERING) as steering:
        whole = await steering.list_appliances()
        paged = await steering.list_appliances(page=2)
    assert [a.id for a in paged.appliances] == [a.id for a in whole.appliances] == ids
    assert paged.next is None and paged.generated_at == whole.generated_at == api.clock()


async def test_client_refuses_a_page_cursor_that_does_not_advance(aiohttp_server: Any) -> None:
    async def stuck(request: web.Request) -> web.Response:
        return web.json_response({"appliances": [], "heartbeat_interval": 10.0,
                                  "generated_at": 1.0, "next": "a1"})

    async with ControlClient(await _serve(aiohttp_server, stuck), "t") as client:
        with pytest.raises(UpstreamError, match="does not advance"):
            await client.list_appliances()
