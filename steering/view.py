"""An immutable snapshot of the appliances steering may use, with precomputed indexes.

Built once per control-API poll and swapped atomically (one attribute assignment), so a
query never sees half of an update. Only healthy appliances enter the indexes: stale,
draining and down appliances are dropped here, once, instead of on every query. The one
exception: when no appliance at all is healthy, stale ones are used as a last resort.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from steering.prefixes import Network, PrefixTable, parse_prefix
from vcdn.schemas import ApplianceView

USABLE_STATES: Final = frozenset({"healthy"})
LAST_RESORT_STATES: Final = frozenset({"stale"})
EARTH_RADIUS_KM: Final = 6371.0


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one appliance can serve; its reported load is measured against this."""

    max_bytes_per_s: float = 1.25e9
    max_requests_per_s: float = 20000.0


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    site: str
    public_url: str  # where players go: the HTTPS URL when the appliance has one
    asn: int
    lat: float
    lon: float
    utilization: float  # 0 idle .. 1 at capacity (may exceed 1)
    addrs4: tuple[str, ...]
    addrs6: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    nodes: tuple[Node, ...]
    lat: float
    lon: float
    utilization: float  # mean of its nodes'
    count4: int = 0  # appliances with an IPv4 / IPv6 address
    count6: int = 0


@dataclass(frozen=True)
class SteeringView:
    sites: Mapping[str, Site]
    nodes: Mapping[str, Node]
    prefixes: PrefixTable[tuple[str, ...]]
    asn_sites: Mapping[int, tuple[str, ...]]
    version: int = 0
    heartbeat_interval: float = 10.0
    generated_at: float = 0.0
    dropped: tuple[str, ...] = field(default=())  # ids left out (not healthy)
    # Per site, the other sites nearest first: the spill order, computed once per view.
    neighbours: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    count4: int = 0  # usable appliances with an IPv4 / IPv6 address
    count6: int = 0
    # What `prefixes` was built from: (site, prefixes) of each usable appliance in order,
    # and the parsed networks per prefix list, so that the next build reuses both.
    prefix_inputs: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), compare=False)
    parsed: Mapping[tuple[str, ...], tuple[Network, ...]] = field(default_factory=dict,
                                                                  compare=False)


def player_url(a: ApplianceView) -> str:
    """The URL players are sent to: the appliance's HTTPS URL when it registered one."""
    return a.tls_url or a.public_url


def host_of(public_url: str) -> str:
    """The host part of an appliance's public URL (brackets of IPv6 literals removed)."""
    return urlsplit(public_url).hostname or ""


def literal_addresses(host: str) -> tuple[str, ...] | None:
    """The host itself when it is an IP literal; None when it is a name to resolve."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        return None


UTILIZATION_STEP: Final = 0.05


def utilization(a: ApplianceView, cap: Capacity) -> float:
    """Reported load over capacity, in steps of 5%: load jitters with every heartbeat, and
    a view that changed only by jitter would needlessly empty the DNS answer cache."""
    by_bytes = a.load.bytes_per_s / cap.max_bytes_per_s if cap.max_bytes_per_s > 0 else 0.0
    by_reqs = (
        a.load.requests_per_s / cap.max_requests_per_s if cap.max_requests_per_s > 0 else 0.0
    )
    return round(max(0.0, by_bytes, by_reqs) / UTILIZATION_STEP) * UTILIZATION_STEP


def signature(
    appliances: Iterable[ApplianceView], resolved: Mapping[str, tuple[str, ...]],
    cap: Capacity, heartbeat_interval: float,
) -> tuple[object, ...]:
    """Everything a view is built from: equal signatures give equal views."""
    items = sorted(
        (a.id, a.site, player_url(a), a.asn, a.lat, a.lon, tuple(a.prefixes), a.state,
         utilization(a, cap), resolved.get(host_of(player_url(a)), ()))
        for a in appliances
    )
    return (heartbeat_interval, *items)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km (haversine), for site-to-site and client-to-site."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _mean_location(nodes: Iterable[Node]) -> tuple[float, float]:
    # Mean of unit vectors: correct across the antimeridian, unlike averaging degrees.
    x = y = z = 0.0
    for n in nodes:
        la, lo = math.radians(n.lat), math.radians(n.lon)
        x += math.cos(la) * math.cos(lo)
        y += math.cos(la) * math.sin(lo)
        z += math.sin(la)
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def build_view(
    appliances: Iterable[ApplianceView],
    resolved: Mapping[str, tuple[str, ...]] | None = None,
    *,
    capacity: Capacity | None = None,
    version: int = 0,
    heartbeat_interval: float = 10.0,
    generated_at: float = 0.0,
    previous: SteeringView | None = None,
) -> SteeringView:
    """Index the healthy appliances; `resolved` maps host names of public URLs to addresses.
    `previous` (the view in service) lends its prefix table when the prefixes are the
    same, and its parsed prefix lists otherwise: a million prefixes cost seconds to parse."""
    cap = capacity or Capacity()
    resolved = resolved or {}
    appliances = list(appliances)
    usable = USABLE_STATES
    if not any(a.state in usable for a in appliances):
        # Nothing healthy at all (say, heartbeats stopped reaching the control plane):
        # stale appliances, which were serving a few beats ago, beat no answer at all.
        usable = LAST_RESORT_STATES
    nodes: dict[str, Node] = {}
    dropped: list[str] = []
    inputs: list[tuple[str, tuple[str, ...]]] = []
    for a in appliances:
        if a.state not in usable:
            dropped.append(a.id)
            continue
        url = player_url(a)
        host = host_of(url)
        addrs = literal_addresses(host)
        if addrs is None:
            addrs = resolved.get(host, ())
        v4 = tuple(x for x in addrs if ":" not in x)
        v6 = tuple(x for x in addrs if ":" in x)
        nodes[a.id] = Node(
            a.id, a.site, url.rstrip("/"), a.asn, a.lat, a.lon,
            utilization(a, cap), v4, v6,
        )
        inputs.append((a.site, tuple(a.prefixes)))
    prefix_inputs = tuple(inputs)
    if previous is not None and previous.prefix_inputs == prefix_inputs:
        # A load or health change that left the prefixes alone: the same table, which
        # also lets the compiled mapping keep its stage 1 at once (`same_entries`).
        table, parsed = previous.prefixes, previous.parsed
    else:
        table, parsed = _prefix_table(prefix_inputs, previous.parsed if previous else {})
    by_site: dict[str, list[Node]] = {}
    for n in nodes.values():
        by_site.setdefault(n.site, []).append(n)
    sites: dict[str, Site] = {}
    for name, members in sorted(by_site.items()):
        lat, lon = _mean_location(members)
        util = sum(n.utilization for n in members) / len(members)
        sites[name] = Site(name, tuple(sorted(members, key=lambda n: n.id)), lat, lon, util,
                           sum(1 for n in members if n.addrs4),
                           sum(1 for n in members if n.addrs6))
    neighbours = {
        a.name: tuple(b.name for b in sorted(
            (b for b in sites.values() if b.name != a.name),
            key=lambda b, a=a: (distance_km(a.lat, a.lon, b.lat, b.lon), b.name)))
        for a in sites.values()
    }
    asn_sites: dict[int, list[str]] = {}
    for n in nodes.values():
        if n.asn and n.site not in asn_sites.setdefault(n.asn, []):
            asn_sites[n.asn].append(n.site)
    return SteeringView(
        sites=sites,
        nodes=nodes,
        prefixes=table,
        asn_sites={k: tuple(sorted(v)) for k, v in asn_sites.items()},
        version=version,
        heartbeat_interval=heartbeat_interval,
        generated_at=generated_at,
        dropped=tuple(dropped),
        neighbours=neighbours,
        count4=sum(s.count4 for s in sites.values()),
        count6=sum(s.count6 for s in sites.values()),
        prefix_inputs=prefix_inputs,
        parsed=parsed,
    )


def _prefix_table(
    inputs: tuple[tuple[str, tuple[str, ...]], ...],
    known: Mapping[tuple[str, ...], tuple[Network, ...]],
) -> tuple[PrefixTable[tuple[str, ...]], dict[tuple[str, ...], tuple[Network, ...]]]:
    """Each network's sites in first-seen order; prefix lists parsed before are reused."""
    parsed: dict[tuple[str, ...], tuple[Network, ...]] = {}
    prefix_sites: dict[Network, list[str]] = {}
    for site, prefixes in inputs:
        nets = parsed.get(prefixes)
        if nets is None:
            nets = known.get(prefixes)
            if nets is None:
                # The control API validates prefixes; never let a bad one break a view.
                nets = tuple(n for n in map(parse_prefix, prefixes) if n is not None)
            parsed[prefixes] = nets
        for net in nets:
            sites = prefix_sites.get(net)
            if sites is None:
                prefix_sites[net] = [site]
            elif site not in sites:
                sites.append(site)
    table = PrefixTable.of_networks((n, tuple(s)) for n, s in prefix_sites.items())
    return table, parsed
