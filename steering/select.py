"""Client → ranked appliances, pure: the mapping policy of steering.

Order of evidence (Open Connect and Traffic Router alike): the ISP's own prefixes
(longest-prefix match), else appliances in the client's ASN, else the nearest sites by
great-circle distance from the client's MaxMind City location, else a default site. The
remaining sites follow, nearest to the chosen one first, so a client always has somewhere
to go. A saturated site sheds a share of its clients (picked by hashing the client's
subnet, so the choice is stable) to the next site: capacity-aware spill that grows with
the overload instead of moving everyone at once onto one neighbour.

Within a site, a title is ranked with `vcdn.hashing.rank` (rendezvous), the very function
the fill planner uses, so requests land where the fill put the bytes; appliances at or
over saturation drop to the end of their site. Without a title (DNS), the site is ranked
by `steering.spread` (weighted rendezvous of the client's subnet, weights each
appliance's spare capacity), which spreads resolvers in proportion to headroom.

The decision also reports `scope`: how many leading bits of the client address it
depended on, which is the ECS scope prefix of RFC 7871 §7.2.1.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from steering import spread
from steering.geo import Location
from steering.prefixes import BITS
from steering.view import Node, Site, SteeringView, distance_km
from vcdn.hashing import rank

Reason = Literal["prefix", "asn", "geo", "default", "none"]
SPREAD_BITS: Final = {4: 24, 6: 56}


class GeoLookup(Protocol):
    def location(self, ip: str) -> tuple[Location | None, int]: ...
    def asn(self, ip: str) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Client:
    """A client network: `source_len` leading bits of `addr` are known (ECS source prefix)."""

    version: int
    addr: int
    source_len: int

    @classmethod
    def of(cls, ip: str, source_len: int | None = None) -> Client:
        a = ipaddress.ip_address(ip)
        width = BITS[a.version]
        n = width if source_len is None else max(0, min(width, source_len))
        return cls(a.version, int(a) >> (width - n) << (width - n), n)

    @property
    def text(self) -> str:
        return str(ipaddress.ip_address(self.addr) if self.version == 4 else
                   ipaddress.IPv6Address(self.addr))

    def bucket(self, bits: int) -> str:
        """The client's network at `bits` leading bits, as a hashing key."""
        width = BITS[self.version]
        bits = min(bits, self.source_len)
        return f"{self.version}:{self.addr >> (width - bits) if bits else 0}/{bits}"

    def spread_key(self, bits: int) -> bytes:
        """The client's network at `bits` leading bits, as `spread`'s key."""
        return spread.key(self.version, self.addr, min(bits, self.source_len))


@dataclass(frozen=True)
class Policy:
    default_site: str = ""
    dispersion: int = 1
    saturation: float = 0.8


@dataclass(frozen=True, slots=True)
class Decision:
    nodes: tuple[Node, ...]  # best first: the chosen site's appliances, then the next sites'
    sites: tuple[str, ...]
    reason: Reason
    scope: int


def _unit(key: str) -> float:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _shed_share(util: float, saturation: float) -> float:
    if util < saturation:
        return 0.0
    if saturation >= 1.0 or util >= 1.0:
        return 1.0
    return (util - saturation) / (1.0 - saturation)


def _by_distance(sites: list[Site], lat: float, lon: float) -> list[Site]:
    return sorted(sites, key=lambda s: (distance_km(lat, lon, s.lat, s.lon), s.name))


def _site_order(
    client: Client, view: SteeringView, geo: GeoLookup | None, policy: Policy
) -> tuple[list[Site], Reason, int]:
    ip = client.text
    match = view.prefixes.lookup(client.version, client.addr)
    scope = match.scope
    if match.value:
        primary = [view.sites[s] for s in match.value if s in view.sites]
        if primary:
            return sorted(primary, key=lambda s: (s.utilization, s.name)), "prefix", scope
    loc, loc_len = geo.location(ip) if geo else (None, 0)
    number, asn_len = geo.asn(ip) if geo else (0, 0)
    scope = max(scope, asn_len)
    asn_sites = [view.sites[s] for s in view.asn_sites.get(number, ()) if s in view.sites]
    if asn_sites:
        if len(asn_sites) > 1 and loc is not None:
            return _by_distance(asn_sites, loc.lat, loc.lon), "asn", max(scope, loc_len)
        return sorted(asn_sites, key=lambda s: s.name), "asn", scope
    scope = max(scope, loc_len)
    if loc is not None and view.sites:
        return _by_distance(list(view.sites.values()), loc.lat, loc.lon), "geo", scope
    if policy.default_site in view.sites:
        return [view.sites[policy.default_site]], "default", scope
    return sorted(view.sites.values(), key=lambda s: s.name), "none", scope


def _rank_site(site: Site, bucket: str, spread_key: bytes, title: str | None,
               policy: Policy) -> tuple[list[Node], bool]:
    """The site's appliances best first, and whether the order depended on the client's
    network (`bucket`, or for DNS its `spread_key`)."""
    ids = [n.id for n in site.nodes]
    by_id = {n.id: n for n in site.nodes}
    varied = False
    if title is None:
        nodes = site.nodes
        ranked = [nodes[i] for i in spread.order(
            spread_key, [spread.seed(n.id) for n in nodes],
            [spread.inverse_weight(n.utilization) for n in nodes])]
        varied = len(ids) > 1
    else:
        ranked = [by_id[i] for i in rank(title, ids)]
        d = min(policy.dispersion, len(ranked))
        if d > 1:
            k = int(_unit(f"{title}\0{bucket}") * d)
            ranked[:d] = ranked[k:d] + ranked[:k]
            varied = True
    # Saturated appliances go last in their site, keeping their relative order.
    return [n for n in ranked if n.utilization < policy.saturation] + [
        n for n in ranked if n.utilization >= policy.saturation
    ], varied


def _count(site: Site, family: int) -> int:
    return site.count4 if family == 4 else site.count6


def _reach(sites: list[Site], depth: int | None, view: SteeringView) -> dict[int, int]:
    """Per address family, the index of the last site an answer of `depth` reaches
    (-1 when no site has an address of that family)."""
    out = {4: len(sites), 6: len(sites)}
    if depth is None:
        return out
    for family in (4, 6):
        total, last = 0, -1
        if not (view.count4 if family == 4 else view.count6):
            out[family] = last
            continue
        for i, site in enumerate(sites):
            n = _count(site, family)
            if n:
                total, last = total + n, i
                if total >= depth:
                    break
        out[family] = last
    return out


def _matters(sites: list[Site], i: int, reach: dict[int, int] | None, least: int) -> bool:
    """Whether the order of site i (holding at least `least` appliances of a family that
    an answer reaches) can change the answer."""
    if reach is None:
        return True
    return any(i <= reach[f] and _count(sites[i], f) >= least for f in (4, 6))


def select(
    client: Client,
    view: SteeringView,
    geo: GeoLookup | None,
    policy: Policy = Policy(),
    title: str | None = None,
    depth: int | None = None,
) -> Decision:
    """Rank the healthy appliances for `client` (and `title`, for HTTP).

    `depth`: how many of the first appliances of each address family the caller uses
    (DNS: the answer count); the scope only accounts for choices that reach into them,
    and sites past them are not ranked (their appliances follow in id order).
    """
    primary, reason, scope = _site_order(client, view, geo, policy)
    scope = min(scope, client.source_len)
    chosen = {s.name for s in primary}
    if primary:
        primary = primary + [view.sites[n] for n in view.neighbours[primary[0].name]
                             if n not in chosen]
    # Spreading clients over appliances (load shedding, DNS weighting, dispersion) hashes
    # the client's /24 (/56): the granularity resolvers send in ECS (RFC 7871 §11.1).
    # When it is used, the answer depends on those bits and the scope says so.
    key_bits = max(scope, min(SPREAD_BITS[client.version], client.source_len))
    bucket = client.bucket(key_bits)
    spread_key = client.spread_key(key_bits)
    varied = False
    ordered: list[Site] = []
    pending: list[Site] = []
    reach = None if depth is None else _reach(primary, depth, view)
    for i, site in enumerate(primary):
        share = _shed_share(site.utilization, policy.saturation)
        # Shedding swaps a site with the next one: it matters if either is reached.
        varied = varied or (0.0 < share < 1.0 and (
            _matters(primary, i, reach, 1)
            or (i + 1 < len(primary) and _matters(primary, i + 1, reach, 1))))
        if share and _unit(f"{site.name}\0{bucket}") < share:
            pending.append(site)  # this client's share of the overload goes to the next site
        else:
            ordered.append(site)
            ordered.extend(pending)
            pending = []
    ordered.extend(pending)
    nodes: list[Node] = []
    reach = None if depth is None else _reach(ordered, depth, view)
    last = len(ordered) if reach is None else max(reach.values())
    for i, site in enumerate(ordered):
        if i > last:
            nodes.extend(site.nodes)  # beyond what the caller uses: left unranked
            continue
        ranked, site_varied = _rank_site(site, bucket, spread_key, title, policy)
        varied = varied or (site_varied and _matters(ordered, i, reach, 2))
        nodes.extend(ranked)
    return Decision(tuple(nodes), tuple(s.name for s in ordered), reason,
                    key_bits if varied else scope)
