"""Building the view: a rebuild from the view in service reuses its prefix table when the
prefixes did not change, and otherwise gives the table a fresh build would."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from steering.view import SteeringView, build_view
from tests.steering.fakes import appliance
from vcdn.schemas import ApplianceView, decode


def fleet(seed: int = 5) -> list[ApplianceView]:
    rng = random.Random(seed)
    out = []
    for i in range(40):
        nets = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24"
                for _ in range(30)]
        nets += ["10.0.0.0/8", f"2001:db8:{i:x}::/48", "10.1.0.0/16"]  # shared by several
        out.append(decode(ApplianceView, appliance(
            f"a{i}", f"s{i // 4}", f"http://127.0.{i // 4}.{i % 4 + 1}:8080",
            prefixes=nets, rps=100.0 * i)))
    return out


def lookups(view: SteeringView, probes: list[tuple[int, int]]) -> list[object]:
    return [view.prefixes.lookup(v, a) for v, a in probes]


def probes_of(items: list[ApplianceView]) -> list[tuple[int, int]]:
    out = []
    for a in items:
        for p in a.prefixes:
            net = ipaddress.ip_network(p)
            out += [(net.version, int(net.network_address)),
                    (net.version, int(net.broadcast_address)),
                    (net.version, max(0, int(net.network_address) - 1))]
    return out


def test_a_load_change_keeps_the_prefix_table_itself() -> None:
    items = fleet()
    first = build_view(items)
    items[3] = dataclasses.replace(items[3], load=dataclasses.replace(
        items[3].load, requests_per_s=19000.0))
    again = build_view(items, previous=first)
    assert again.prefixes is first.prefixes
    assert again.nodes["a3"].utilization != first.nodes["a3"].utilization
    fresh = build_view(items)  # the same view a build from nothing gives
    assert again.prefixes.same_entries(fresh.prefixes)
    assert dataclasses.replace(again, prefixes=fresh.prefixes) == fresh


def test_changed_prefixes_give_the_table_of_a_fresh_build() -> None:
    items = fleet()
    first = build_view(items)
    items[0] = dataclasses.replace(items[0], prefixes=items[0].prefixes[5:])
    items[7] = dataclasses.replace(items[7], state="down")  # its prefixes leave too
    items[9] = dataclasses.replace(items[9], site="moved")
    again = build_view(items, previous=first)
    fresh = build_view(items)
    assert again.prefixes is not first.prefixes
    assert again.prefixes.same_entries(fresh.prefixes)
    probes = probes_of(fleet())
    assert lookups(again, probes) == lookups(fresh, probes)
    assert lookups(again, probes) != lookups(first, probes)
