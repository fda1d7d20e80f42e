"""Client prefixes learned over BGP, pure: the ExaBGP configuration we run, and the RIB
we keep from its JSON messages.

Open Connect appliances learn which clients they serve from a BGP session with the ISP's
router: the ISP announces its customer prefixes, the appliance registers them, steering
maps those clients to it. We do not speak BGP ourselves: ExaBGP (a mature speaker) holds
the session and hands every received UPDATE to a helper as one JSON line
(``api { receive { parsed; update; } neighbor-changes; }``); this module turns those
lines into the set of prefixes, and `appliance.bgp_speaker` does the I/O.

What is accepted, deliberately: unicast IPv4/IPv6 NLRI (RFC 4271 §4.3, RFC 4760); a
default route (0/0, ::/0) is ignored, since it would claim every client on the
Internet; a session going down withdraws everything learned on it (RFC 4271 §9.1: routes
of a closed session are no longer valid).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

FAMILIES: Final = frozenset({"ipv4 unicast", "ipv6 unicast"})
MAX_PREFIXES: Final = 4096  # the control API's limit per registration


@dataclass(frozen=True, slots=True)
class BgpPeer:
    """One session with the ISP's router (the settings' ``bgp_*`` values)."""

    neighbor: str
    peer_as: int
    local_as: int
    local_address: str
    router_id: str
    port: int = 179
    hold_time: int = 90


def exabgp_config(peer: BgpPeer, relay: list[str]) -> str:
    """The ExaBGP configuration: one neighbor, receive-only, updates to the `relay` helper.

    We announce nothing (an appliance is not a router); both unicast families are
    negotiated so that the ISP can send IPv4 and IPv6 customer prefixes.
    """
    run = " ".join(relay)
    return f"""\
process vcdn-relay {{
    run {run};
    encoder json;
}}

neighbor {peer.neighbor} {{
    router-id {peer.router_id};
    local-address {peer.local_address};
    local-as {peer.local_as};
    peer-as {peer.peer_as};
    hold-time {peer.hold_time};
    connect {peer.port};
    family {{
        ipv4 unicast;
        ipv6 unicast;
    }}
    api {{
        processes [ vcdn-relay ];
        neighbor-changes;
        receive {{
            parsed;
            update;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class BgpEvent:
    """What one ExaBGP line means for the RIB."""

    kind: Literal["state", "update"]
    peer: str
    state: str = ""
    announced: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()


def _prefix(nlri: Any) -> str | None:
    text = nlri.get("nlri") if isinstance(nlri, dict) else nlri
    if not isinstance(text, str):
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if net.prefixlen == 0:
        return None  # a default route claims every client: never register it
    return str(net)


def parse_line(line: str) -> BgpEvent | None:
    """One JSON line from ExaBGP → an event, or None for what we do not act on."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    address = neighbor.get("address", {})
    peer = str(address.get("peer", "")) if isinstance(address, dict) else ""
    if msg.get("type") == "state":
        return BgpEvent("state", peer, state=str(neighbor.get("state", "")))
    if msg.get("type") != "update":
        return None
    update = (neighbor.get("message") or {}).get("update")
    if not isinstance(update, dict):
        return None  # an End-of-RIB marker or something we do not use
    announced: list[str] = []
    for family, by_nexthop in (update.get("announce") or {}).items():
        if family in FAMILIES and isinstance(by_nexthop, dict):
            for nlris in by_nexthop.values():
                announced += [p for p in map(_prefix, nlris or []) if p]
    withdrawn: list[str] = []
    for family, nlris in (update.get("withdraw") or {}).items():
        if family in FAMILIES and isinstance(nlris, list):
            withdrawn += [p for p in map(_prefix, nlris) if p]
    return BgpEvent("update", peer, announced=tuple(announced), withdrawn=tuple(withdrawn))


@dataclass
class Rib:
    """Prefixes per peer; `apply` says whether the union changed."""

    routes: dict[str, set[str]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def apply(self, event: BgpEvent) -> bool:
        before = self.prefixes()
        if event.kind == "state":
            self.states[event.peer] = event.state
            if event.state != "up":
                self.routes.pop(event.peer, None)
        else:
            table = self.routes.setdefault(event.peer, set())
            table.difference_update(event.withdrawn)
            table.update(event.announced)
        return self.prefixes() != before

    def prefixes(self) -> tuple[str, ...]:
        union: set[str] = set().union(*self.routes.values()) if self.routes else set()
        nets = sorted((ipaddress.ip_network(p) for p in union),
                      key=lambda n: (n.version, n.network_address, n.prefixlen))
        return tuple(str(n) for n in nets[:MAX_PREFIXES])

    @property
    def up(self) -> bool:
        return any(state == "up" for state in self.states.values())
