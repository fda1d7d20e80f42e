"""The playback API: ranked signed URLs, client address and trust, errors, health."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from steering.geo import Geo
from steering.http_api import client_address, make_app
from steering.service import Steering
from steering.settings import SteeringSettings
from steering.sync import ControlClient
from tests.steering.conftest import ASN, CITY, KEYS
from tests.steering.fakes import FakeControl, appliance
from vcdn.errors import BadToken, ClientError
from vcdn.hashing import rank
from vcdn.tokens import parse_keys, verify

ISP_IP = "81.2.69.142"  # inside the ISP's registered 81.2.69.0/24


async def make_client(aiohttp_client: Any, control: FakeControl,
                      **kw: Any) -> tuple[TestClient, Steering]:
    kw = {"origin_url": "http://origin.test:8000/", "default_site": "lon",
          "trusted_proxies": ("127.0.0.1/32", "10.0.0.0/8"), **kw}
    settings = SteeringSettings(control=control.url, zone="cdn.example.", signing_keys=KEYS,
                                control_token="steer-token", **kw)
    steering = Steering(settings, Geo(CITY, ASN))
    session = aiohttp.ClientSession()
    ctl = ControlClient(session, control.url, "steer-token")
    assert await steering.poll_once(ctl)
    app = make_app(steering, ctl)

    async def close_session(_: Any) -> AsyncIterator[None]:
        yield
        await session.close()

    app.cleanup_ctx.append(close_session)
    return await aiohttp_client(app), steering


def token_of(url: str) -> str:
    return url.split("/s/", 1)[1].split("/", 1)[0]


async def test_ranked_signed_urls_best_site_then_next_then_origin(
    aiohttp_client: Any, control: FakeControl
) -> None:
    client, _ = await make_client(aiohttp_client, control)
    r = await client.get("/v1/playback/bbb", headers={"X-Forwarded-For": ISP_IP})
    assert r.status == 200
    body = await r.json()
    assert body["title"] == "bbb" and body["sites"][0] == "isp"
    urls = body["urls"]
    isp_order = rank("bbb", ["isp-a", "isp-b"])
    hosts = {"isp-a": "127.0.1.1", "isp-b": "127.0.1.2"}
    assert [u.split("/")[2].split(":")[0] for u in urls[:2]] == [hosts[i] for i in isp_order]
    assert all(u.endswith("/bbb/master.m3u8") for u in urls)
    assert urls[-1] == "http://origin.test:8000/v/bbb/master.m3u8"
    assert len(urls) == 2 + 2 + 1  # ISP's two, then the next site's (London: two), origin
    keys = parse_keys(KEYS)
    for u in urls[:-1]:
        tok = verify(token_of(u), "bbb", keys, time.time())
        assert tok.key_id == "k1" and tok.expires == body["expires"]
    with pytest.raises(BadToken):
        verify(token_of(urls[0]), "sintel", keys, time.time())
    assert body["expires"] > time.time() + 3600
    # DASH beside HLS: the same appliances and tokens, in the same order.
    assert body["dash"] == [u.removesuffix("master.m3u8") + "manifest.mpd" for u in urls]


async def test_untrusted_peer_cannot_choose_its_address_with_xff(
    aiohttp_client: Any, control: FakeControl
) -> None:
    client, _ = await make_client(aiohttp_client, control, trusted_proxies=())
    body = await (await client.get("/v1/playback/bbb",
                                   headers={"X-Forwarded-For": ISP_IP})).json()
    assert body["sites"][0] == "lon"  # loopback peer: not placeable → default site


def test_xff_takes_the_rightmost_untrusted_hop() -> None:
    import ipaddress
    trusted = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")]
    assert client_address("127.0.0.1", "1.2.3.4, 81.2.69.142, 10.1.1.1", trusted) == ISP_IP
    assert client_address("192.0.2.7", "81.2.69.142", trusted) == "192.0.2.7"
    assert client_address("::ffff:127.0.0.1", "2001:db8::1", trusted) == "2001:db8::1"
    with pytest.raises(ClientError, match="not an IP address"):
        client_address("127.0.0.1", "81.2.69.142, bogus", trusted)


async def test_bad_xff_is_a_400_with_a_message(aiohttp_client: Any,
                                               control: FakeControl) -> None:
    client, _ = await make_client(aiohttp_client, control)
    r = await client.get("/v1/playback/bbb", headers={"X-Forwarded-For": "not-an-ip"})
    assert r.status == 400 and "not an IP address" in (await r.json())["error"]


async def test_unknown_title_is_404_and_bad_title_is_400(aiohttp_client: Any,
                                                         control: FakeControl) -> None:
    client, _ = await make_client(aiohttp_client, control)
    r = await client.get("/v1/playback/nosuchtitle")
    assert r.status == 404 and "not in the catalog" in (await r.json())["error"]
    r = await client.get("/v1/playback/..%2F..%2Fetc")
    assert r.status in (400, 404)
    r = await client.get("/v1/playback/" + "x" * 300)
    assert r.status == 400


async def test_known_titles_are_cached_through_a_control_outage(
    aiohttp_client: Any, control: FakeControl
) -> None:
    client, _ = await make_client(aiohttp_client, control)
    assert (await client.get("/v1/playback/bbb")).status == 200
    control.fail = True
    assert (await client.get("/v1/playback/bbb")).status == 200
    r = await client.get("/v1/playback/sintel")  # never asked before: cannot tell
    assert r.status == 503 and "Control API" in (await r.json())["error"]


async def test_healthz_reports_a_stale_view(aiohttp_client: Any, control: FakeControl) -> None:
    now = [time.time()]
    client, steering = await make_client(aiohttp_client, control)
    steering.clock = lambda: now[0]
    h = await (await client.get("/healthz")).json()
    assert h["status"] == "ok" and h["view"]["usable_appliances"] == 7
    control.fail = True
    async with aiohttp.ClientSession() as s:
        assert not await steering.poll_once(ControlClient(s, control.url, "steer-token"))
    now[0] += 60
    h = await (await client.get("/healthz")).json()
    assert h["status"] == "degraded" and h["view"]["stale"]
    assert h["view"]["usable_appliances"] == 7  # the last good view is kept
    assert "500" in h["control_error"]


async def test_metrics_expose_view_and_cache_counters(aiohttp_client: Any,
                                                      control: FakeControl) -> None:
    client, _ = await make_client(aiohttp_client, control)
    await client.get("/v1/playback/bbb")
    text = await (await client.get("/metrics")).text()
    for name in ("vcdn_steering_view_usable_appliances 7.0", "vcdn_steering_view_stale 0.0",
                 "vcdn_steering_dns_cache_hits", 'vcdn_steering_playback_total{reason="'):
        assert name in text


async def test_no_appliance_and_no_origin_is_503(aiohttp_client: Any,
                                                 control: FakeControl) -> None:
    control.appliances = []
    client, _ = await make_client(aiohttp_client, control, origin_url="")
    r = await client.get("/v1/playback/bbb")
    assert r.status == 503 and "No healthy appliance" in (await r.json())["error"]


async def test_host_names_in_public_urls_are_resolved_once_for_dns(
    aiohttp_client: Any, control: FakeControl
) -> None:
    control.appliances = [appliance("named", "lon", "http://localhost:8080", lat=51.5,
                                    lon=-0.1)]
    _, steering = await make_client(aiohttp_client, control)
    node = steering.view.nodes["named"]
    assert "127.0.0.1" in node.addrs4
    # The playback URL keeps the name: TLS and virtual hosts need it.
    assert node.public_url == "http://localhost:8080"


async def test_every_answer_is_readable_cross_origin(aiohttp_client: Any,
                                                     control: FakeControl) -> None:
    """Browser players on another origin can read answers and errors (CORS), and a
    preflight is answered."""
    client, _ = await make_client(aiohttp_client, control)
    for path, status in (("/v1/playback/bbb", 200), ("/v1/playback/nosuchtitle", 404)):
        r = await client.get(path, headers={"Origin": "http://player.example"})
        assert r.status == status
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = await client.options("/v1/playback/bbb", headers={
        "Origin": "http://player.example", "Access-Control-Request-Method": "GET"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in r.headers["Access-Control-Allow-Methods"]


async def test_healthz_and_metrics_count_reachable_control_replicas(
    aiohttp_client: Any, control: FakeControl
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    _, steering = await make_client(aiohttp_client, control)
    async with aiohttp.ClientSession() as s:
        both = ControlClient(s, f"{dead},{control.url}", "steer-token")
        assert await steering.poll_once(both)  # the dead replica is skipped
        app = make_app(steering, both)
        test = await aiohttp_client(app)
        h = await (await test.get("/healthz")).json()
        assert h["control"] == {"urls": [dead, control.url], "current": control.url,
                                "reachable": 1, "all_unreachable": False}
        control.fail = True  # now no replica answers: the last good view stays
        assert not await steering.poll_once(both)
        h = await (await test.get("/healthz")).json()
        assert h["control"]["all_unreachable"] and h["control"]["reachable"] == 0
        assert h["view"]["usable_appliances"] == 7
        text = await (await test.get("/metrics")).text()
        assert "vcdn_steering_control_reachable 0.0" in text
        assert "vcdn_steering_control_replicas 2.0" in text
