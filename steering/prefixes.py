"""Longest-prefix match of a client address against the appliances' client prefixes.

Implementation choice (measured by ``python -m bench.steering.prefixes``): one dict per
prefix length holding masked network integers, probed from the longest length down. An
ISP registers prefixes of a handful of distinct lengths, so a lookup is a few integer
masks and dict probes; this measured about as fast as the pytricia C radix tree for
tables of a few thousand prefixes, needs no compiled dependency, and gives the
per-length sorted lists that the ECS scope computation needs anyway.

`lookup` also answers the *scope*: the shortest prefix length around the client inside
which every address gets the same match (RFC 7871 §7.2.1 asks for exactly that). With
a sorted list per length, the nearest other prefix is a neighbour found by bisection.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

V = TypeVar("V")

BITS: Final = {4: 32, 6: 128}

Network = tuple[int, int, int]  # IP version, network address as an int, prefix length


def parse_prefix(text: str) -> Network | None:
    """`ipaddress.ip_network(text, strict=False)` as (version, network, length), None if
    it is not a network. A million prefixes are parsed per view build, so the canonical
    form (what the control API stores) goes through `inet_pton`, ~10x faster; anything
    else (a netmask, no length, a scope id) through `ipaddress`, which decides."""
    addr, sep, length = text.partition("/")
    if sep and length.isdigit() and length.isascii() and len(length) <= 3:
        plen = int(length)
        family, version = (socket.AF_INET6, 6) if ":" in addr else (socket.AF_INET, 4)
        width = BITS[version]
        if plen <= width and "%" not in addr:
            try:
                packed = socket.inet_pton(family, addr)
            except OSError:
                packed = b""
            if packed and (version == 6 or addr.count(".") == 3):
                shift = width - plen
                return version, int.from_bytes(packed, "big") >> shift << shift, plen
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), net.prefixlen


@dataclass(frozen=True, slots=True)
class Match(Generic[V]):
    value: V | None
    prefix_len: int  # length of the matched prefix (0 when nothing matched)
    scope: int  # every address sharing this many leading bits gets the same match


def _common_bits(a: int, b: int, width: int) -> int:
    return width - (a ^ b).bit_length()


class _Family(Generic[V]):
    __slots__ = ("by_len", "lengths", "sorted_nets", "width")

    def __init__(self, width: int, entries: dict[tuple[int, int], V]) -> None:
        self.width = width
        self.by_len: dict[int, dict[int, V]] = {}
        for (net, plen), value in entries.items():
            self.by_len.setdefault(plen, {})[net] = value
        self.lengths = sorted(self.by_len, reverse=True)
        self.sorted_nets = {plen: sorted(nets) for plen, nets in self.by_len.items()}

    def lookup(self, addr: int) -> Match[V]:
        width = self.width
        found: V | None = None
        matched = 0
        for plen in self.lengths:
            net = addr >> (width - plen) << (width - plen) if plen else 0
            value = self.by_len[plen].get(net)
            if value is not None:
                found, matched = value, plen
                break
        # The match holds for the /s around addr as long as no longer prefix lies in it:
        # a longer prefix Q sharing c leading bits with addr forces s > c.
        scope = matched
        for plen in self.lengths:
            if plen <= matched:
                break
            nets = self.sorted_nets[plen]
            i = bisect.bisect_left(nets, addr)
            for j in (i - 1, i):
                if 0 <= j < len(nets):
                    scope = max(scope, _common_bits(addr, nets[j], width) + 1)
        return Match(found, matched, min(scope, width))


class PrefixTable(Generic[V]):
    """Immutable longest-prefix-match table for IPv4 and IPv6 prefixes."""

    __slots__ = ("_families",)

    def __init__(self, items: Iterable[tuple[str, V]]) -> None:
        entries: dict[int, dict[tuple[int, int], V]] = {4: {}, 6: {}}
        for text, value in items:
            net = ipaddress.ip_network(text, strict=False)
            entries[net.version].setdefault((int(net.network_address), net.prefixlen), value)
        self._families = {v: _Family(BITS[v], e) for v, e in entries.items()}

    @classmethod
    def of_networks(cls, items: Iterable[tuple[Network, V]]) -> PrefixTable[V]:
        """The table of already parsed networks (`parse_prefix`); the first value of a
        network repeated wins, as in the constructor."""
        entries: dict[int, dict[tuple[int, int], V]] = {4: {}, 6: {}}
        for (version, net, plen), value in items:
            entries[version].setdefault((net, plen), value)
        table = cls.__new__(cls)
        table._families = {v: _Family(BITS[v], e) for v, e in entries.items()}
        return table

    def lookup(self, version: int, addr: int) -> Match[V]:
        """Longest prefix holding the address `addr` (an int) of IP `version` (4 or 6)."""
        return self._families[version].lookup(addr)

    def same_entries(self, other: PrefixTable[V]) -> bool:
        """Whether both tables hold the same prefixes with the same values (a view rebuilt
        from unchanged prefixes keeps its compiled tables)."""
        if other is self:
            return True
        return all(self._families[v].by_len == other._families[v].by_len for v in (4, 6))

    def __len__(self) -> int:
        return sum(len(n) for f in self._families.values() for n in f.by_len.values())
