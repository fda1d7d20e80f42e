"""Client prefixes learned over BGP: the pure RIB from ExaBGP's JSON, and for real, an
appliance whose ExaBGP peers with a second ExaBGP playing the ISP's router on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from appliance import settings as settings_mod
from appliance.bgp import BgpEvent, BgpPeer, Rib, exabgp_config, parse_line
from appliance.ctl import format_status
from onebox.procs import free_port
from tests.appliance.conftest import (
    Served,
    api,
    appliance_toml,
    run_appliance,
    until,
)

NEIGHBOR = {"address": {"local": "127.0.0.2", "peer": "127.0.0.1"},
            "asn": {"local": 64501, "peer": 64500}, "router-id": "10.0.0.2"}


def line(kind: str, **neighbor: object) -> str:
    """An ExaBGP 5 JSON line, shaped like the ones a real session produced."""
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": {**NEIGHBOR, **neighbor}})


def update(announce: dict[str, object] | None = None, withdraw: dict[str, object] | None = None
           ) -> str:
    body: dict[str, object] = {"attribute": {"origin": "igp"}}
    if announce:
        body["announce"] = announce
    if withdraw:
        body["withdraw"] = withdraw
    return line("update", direction="receive", message={"update": body})


def test_updates_announce_and_withdraw_unicast_prefixes() -> None:
    rib = Rib()
    assert not rib.apply(parse_line(line("state", state="up")))  # type: ignore[arg-type]
    assert rib.up
    assert rib.apply(parse_line(update({"ipv4 unicast": {"127.0.0.1": [
        {"nlri": "192.0.2.0/24"}, {"nlri": "198.51.100.0/25"}]}})))  # type: ignore[arg-type]
    assert rib.apply(parse_line(update({"ipv6 unicast": {"::1": [
        {"nlri": "2001:db8::/32"}]}})))  # type: ignore[arg-type]
    assert rib.prefixes() == ("192.0.2.0/24", "198.51.100.0/25", "2001:db8::/32")
    assert rib.apply(parse_line(update(withdraw={"ipv4 unicast": [
        {"nlri": "198.51.100.0/25"}]})))  # type: ignore[arg-type]
    assert rib.prefixes() == ("192.0.2.0/24", "2001:db8::/32")
    # Announcing what we have changes nothing.
    assert not rib.apply(parse_line(update({"ipv4 unicast": {"x": [
        {"nlri": "192.0.2.0/24"}]}})))  # type: ignore[arg-type]


def test_session_down_withdraws_everything_learned_on_it() -> None:
    rib = Rib()
    rib.apply(BgpEvent("state", "127.0.0.1", state="up"))
    rib.apply(BgpEvent("update", "127.0.0.1", announced=("192.0.2.0/24",)))
    assert rib.apply(BgpEvent("state", "127.0.0.1", state="down"))
    assert rib.prefixes() == () and not rib.up


@pytest.mark.parametrize(
    "text",
    [
        "not json", "[]", "{}", line("notification"),
        line("update", message={"eor": {"afi": "ipv4", "safi": "unicast"}}),
    ],
)
def test_lines_we_do_not_act_on_are_ignored(text: str) -> None:
    assert parse_line(text) is None


def test_default_routes_other_families_and_junk_nlri_are_ignored() -> None:
    ev = parse_line(update({
        "ipv4 unicast": {"n": [{"nlri": "0.0.0.0/0"}, {"nlri": "bogus"}, {"nlri": "10.1.0.0/16"}]},
        "ipv6 unicast": {"n": [{"nlri": "::/0"}]},
        "ipv4 flow": {"n": [{"nlri": "10.9.0.0/16"}]},
    }))
    assert ev is not None and ev.announced == ("10.1.0.0/16",)


def test_exabgp_config_names_the_session_and_the_relay() -> None:
    text = exabgp_config(BgpPeer("192.0.2.1", 64500, 64501, "192.0.2.2", "192.0.2.2", 1179),
                         ["/usr/bin/python3", "-m", "appliance.bgp_relay", "/run/bgp.sock"])
    for expected in ("neighbor 192.0.2.1 {", "peer-as 64500;", "local-as 64501;",
                     "local-address 192.0.2.2;", "connect 1179;", "ipv6 unicast;",
                     "run /usr/bin/python3 -m appliance.bgp_relay /run/bgp.sock;"):
        assert expected in text


ROUTER_CONF = """\
neighbor 127.0.0.2 {{
    router-id 10.0.0.1;
    local-address 127.0.0.1;
    local-as 64500;
    peer-as 64501;
    passive true;
    family {{ ipv4 unicast; ipv6 unicast; }}
    announce {{
        ipv4 {{
            unicast 192.0.2.0/24 next-hop 127.0.0.1;
            unicast 198.51.100.0/25 next-hop 127.0.0.1;
            unicast 0.0.0.0/0 next-hop 127.0.0.1;
        }}
        ipv6 {{ unicast 2001:db8::/32 next-hop ::1; }}
    }}
}}
"""


async def start_router(tmp_path: Path, port: int) -> asyncio.subprocess.Process:
    """A second, independent ExaBGP acting as the ISP's router: passive, three prefixes."""
    conf = tmp_path / "router.conf"
    conf.write_text(ROUTER_CONF.format())
    env = {**os.environ, "exabgp.tcp.bind": "127.0.0.1", "exabgp.tcp.port": str(port),
           "exabgp.daemon.drop": "false", "exabgp.api.cli": "false"}
    with open(tmp_path / "router.log", "wb") as log:  # noqa: ASYNC230 - opened once
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exabgp", "server", str(conf), env=env, stdout=log,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )


@pytest.mark.slow
async def test_prefixes_from_the_isp_router_flow_into_registration_and_go_away_with_it(
    tmp_path: Path, origin: Served, control: Served
) -> None:
    port = free_port()
    router = await start_router(tmp_path, port)
    # The operator approved two of the three prefixes the router will announce: the third
    # (another network's /25) must never reach the control plane (issue 11, finding 6).
    approved = ["203.0.113.0/24", "192.0.2.0/24", "2001:db8::/32"]
    await api(control.url, "PUT", "/enrollments/a1", body={"id": "a1", "site": "s1",
                                                          "prefixes": approved})
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "c", control_url=control.url, origin_url=origin.url,
        asn=64501, prefixes=["203.0.113.0/24"], bgp_neighbor="127.0.0.1",
        bgp_local_address="127.0.0.2", bgp_peer_as=64500, bgp_port=port,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    try:
        async def registered_prefixes() -> list[str]:
            listing = await api(control.url, "GET", "/appliances")
            return next((a["prefixes"] for a in listing["appliances"] if a["id"] == "a1"), [])

        learned = ["192.0.2.0/24", "2001:db8::/32"]  # 198.51.100.0/25 is not approved

        async def has_learned() -> bool:
            return await registered_prefixes() == ["203.0.113.0/24", *learned]

        await until(has_learned, within=30)
        text = format_status(running.appliance.summary())
        assert "bgp       up with 127.0.0.1, 3 prefixes learned" in text

        # The router goes away: the session drops, its routes are withdrawn (RFC 4271 §9.1).
        router.terminate()
        await router.wait()

        async def only_static() -> bool:
            return await registered_prefixes() == ["203.0.113.0/24"]

        await until(only_static, within=30)
    finally:
        if router.returncode is None:
            router.kill()
            await router.wait()
        await running.stop()
