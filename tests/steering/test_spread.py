"""The DNS spread (`steering.spread`): proportional to spare capacity, stable when an
appliance leaves, the same in every process, keyed by the client network's ECS address."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections import Counter
from typing import Any

from steering import dns_wire, spread
from steering.select import Client, select
from steering.view import build_view
from tests.steering.fakes import appliance
from vcdn.schemas import ApplianceView, decode

IDS = ["lon-1", "lon-2", "lon-3", "lon-4"]
# Utilizations 0, 0.25, 0.5 and 0.75 (20,000 requests/s is an appliance's capacity):
# weights 1, 0.75, 0.5, 0.25, so shares of 0.4, 0.3, 0.2 and 0.1.
RPS = [0.0, 5000.0, 10000.0, 15000.0]
SHARES = [0.4, 0.3, 0.2, 0.1]


def keys(n: int) -> list[bytes]:
    return [spread.key(4, (i * 2654435761 % (1 << 24)) << 8, 24) for i in range(n)]


def test_first_choices_follow_spare_capacity() -> None:
    seeds = [spread.seed(i) for i in IDS]
    inverse = [spread.inverse_weight(r / 20000.0) for r in RPS]
    firsts = Counter(spread.order(k, seeds, inverse)[0] for k in keys(20000))
    for i, share in enumerate(SHARES):
        assert abs(firsts[i] / 20000 - share) < 0.015, (i, firsts)


def test_equal_weights_spread_evenly_and_every_place_is_shared() -> None:
    seeds = [spread.seed(i) for i in IDS]
    orders = [tuple(spread.order(k, seeds, [1.0] * 4)) for k in keys(24000)]
    for place in range(4):
        counts = Counter(o[place] for o in orders)
        assert all(abs(counts[i] / 24000 - 0.25) < 0.015 for i in range(4)), (place, counts)


def test_an_appliance_leaving_moves_only_its_own_clients() -> None:
    seeds = [spread.seed(i) for i in IDS]
    inverse = [spread.inverse_weight(r / 20000.0) for r in RPS]
    moved = Counter()
    for k in keys(10000):
        before = [IDS[i] for i in spread.order(k, seeds, inverse)]
        after = [IDS[1:][i] for i in spread.order(k, seeds[1:], inverse[1:])]
        # The others keep their order; those who had lon-1 first go to their second.
        assert after == [i for i in before if i != "lon-1"]
        if before[0] == "lon-1":
            moved[after[0]] += 1
    # lon-1's clients spread over the rest in proportion to their weights (3:2:1).
    total = sum(moved.values())
    assert abs(total / 10000 - 0.4) < 0.02
    assert abs(moved["lon-2"] / total - 0.5) < 0.04 and abs(moved["lon-4"] / total - 1 / 6) < 0.04


def test_select_ranks_a_site_by_the_spread() -> None:
    items = [appliance(i, "lon", f"http://127.0.3.{j + 1}:8080", lat=51.5, lon=-0.1, rps=r)
             for j, (i, r) in enumerate(zip(IDS, RPS, strict=True))]
    v = build_view([decode(ApplianceView, a) for a in items])
    seeds = [spread.seed(i) for i in IDS]
    firsts: Counter[str] = Counter()
    for j in range(4000):
        c = Client.of(f"81.{j // 256}.{j % 256}.0", 24)
        d = select(c, v, None)
        inverse = [spread.inverse_weight(n.utilization) for n in v.sites["lon"].nodes]
        assert [n.id for n in d.nodes] == [
            v.sites["lon"].nodes[i].id for i in spread.order(c.spread_key(24), seeds, inverse)]
        firsts[d.nodes[0].id] += 1
    assert abs(firsts["lon-1"] / 4000 - 0.4) < 0.03


def test_the_spread_is_the_same_in_another_process() -> None:
    code = ("from steering import spread; import sys; ks = [spread.key(4, i << 8, 24) "
            "for i in range(200)]; s = [spread.seed(i) for i in sys.argv[1:]]; "
            "print([spread.order(k, s, [1.0, 2.0, 4.0, 1.5]) for k in ks])")
    here = [spread.order(spread.key(4, i << 8, 24), [spread.seed(i) for i in IDS],
                         [1.0, 2.0, 4.0, 1.5]) for i in range(200)]
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, *IDS], capture_output=True,
                             text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": hashseed}).stdout
        assert out.strip() == str(here)


def _ecs(net: str) -> bytes:
    """The ECS option data (scope 0) of `net`."""
    n: Any = ipaddress.ip_network(net)
    family = 1 if n.version == 4 else 2
    return (family.to_bytes(2, "big") + bytes((n.prefixlen, 0))
            + n.network_address.packed[: (n.prefixlen + 7) // 8])


def test_the_key_is_the_address_bytes_of_the_networks_ecs_option() -> None:
    for net in ("81.2.69.0/24", "10.0.0.0/8", "10.1.2.128/25", "0.0.0.0/0",
                "2001:db8:100::/48", "2001:db8:100:ab00::/56", "2001:db8::/33"):
        c = Client.of(net.split("/")[0], int(net.split("/")[1]))
        key = c.spread_key(c.source_len)
        assert dns_wire.valid_ecs(_ecs(net)) and key == _ecs(net)[4:], net
    # Bits of the address past the prefix never reach the key.
    assert Client.of("81.2.69.255", 20).spread_key(20) == _ecs("81.2.64.0/20")[4:]
    assert Client.of("81.2.69.255", 24).spread_key(16) == _ecs("81.2.0.0/16")[4:]
