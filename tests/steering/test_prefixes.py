"""Longest-prefix match and the scope it reports."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.prefixes import PrefixTable, parse_prefix

TABLE = [("10.0.0.0/8", "a"), ("10.1.0.0/16", "b"), ("10.1.2.0/24", "c"),
         ("192.0.2.0/24", "d"), ("2001:db8::/32", "e"), ("2001:db8:1::/48", "f")]


def _int(ip: str) -> int:
    return int(ipaddress.ip_address(ip))


@pytest.mark.parametrize(
    ("ip", "value", "plen"),
    [("10.9.9.9", "a", 8), ("10.1.9.9", "b", 16), ("10.1.2.3", "c", 24),
     ("192.0.2.255", "d", 24), ("192.0.3.1", None, 0), ("2001:db8:1::5", "f", 48),
     ("2001:db8:2::5", "e", 32), ("2002::1", None, 0)],
)
def test_longest_prefix_wins(ip: str, value: str | None, plen: int) -> None:
    t = PrefixTable(TABLE)
    m = t.lookup(ipaddress.ip_address(ip).version, _int(ip))
    assert (m.value, m.prefix_len) == (value, plen)


def test_scope_narrows_when_a_longer_prefix_is_nearby() -> None:
    t = PrefixTable(TABLE)
    # 10.1.3.0 matches 10.1/16, but 10.1.2.0/24 shares 23 bits with it: scope must be 24.
    assert t.lookup(4, _int("10.1.3.0")).scope == 24
    # 10.1.200.0 is outside 10.1.2.0/24 from bit 17 on: /17 is the widest safe scope.
    assert t.lookup(4, _int("10.1.200.0")).scope == 17
    # With no longer prefix under the match, the match's own length is the scope.
    assert t.lookup(4, _int("192.0.2.9")).scope == 24
    # 10.200.0.1 and 10.1.0.0/16 part at bit 9: the /8 match only holds for the /9.
    assert t.lookup(4, _int("10.200.0.1")).scope == 9
    # No match at all: the scope is what excludes every prefix (192.0.2/24 is nearest).
    assert t.lookup(4, _int("192.0.3.1")).scope == 24


prefixes = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 32)), min_size=0, max_size=30
)


@settings(max_examples=150, deadline=None)
@given(prefixes, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_matches_brute_force_and_scope_is_sound(nets: list[tuple[int, int]], addr: int,
                                                other: int) -> None:
    """Agrees with a brute-force search, and every address inside the reported scope
    gets the same match (what an ECS scope promises a resolver's cache)."""
    items = [(str(ipaddress.ip_network((n, p), strict=False)), i) for i, (n, p) in
             enumerate(nets)]
    table = PrefixTable(items)
    networks = {ipaddress.ip_network(text): v for text, v in reversed(items)}

    def brute(a: int) -> tuple[object, int]:
        best: tuple[object, int] = (None, 0)
        for net, v in networks.items():
            if ipaddress.ip_address(a) in net and net.prefixlen >= best[1]:
                best = (v if net.prefixlen > best[1] or best[0] is None else best[0],
                        net.prefixlen)
        return best

    m = table.lookup(4, addr)
    want_value, want_len = brute(addr)
    assert m.prefix_len == want_len
    assert (m.value is None) == (want_value is None)
    # A neighbour sharing `scope` leading bits must land on the same prefix.
    keep = 32 - m.scope
    neighbour = (addr >> keep << keep) | (other & ((1 << keep) - 1)) if keep else addr
    n = table.lookup(4, neighbour)
    assert (n.value, n.prefix_len) == (m.value, m.prefix_len)


def _reference(text: str) -> tuple[int, int, int] | None:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), net.prefixlen


@pytest.mark.parametrize("text", [
    "10.1.2.3/24", "0.0.0.0/0", "255.255.255.255/32", "10.0.0.0", "10.0.0.0/255.0.0.0",
    "10.1.1.1/08", "2001:db8::1/128", "::/0", "::ffff:1.2.3.4/120", "fe80::1%eth0/64",
    "1.2.3/24", "010.1.1.1/8", "10.1.1.1/33", "2001:db8::/129", "x/24", "10.1.1.1/+8",
    "10.1.1.1/ 8", "1.2.3.4/\u0663", "1.2.3.4/", "/24", "", "1.2.3.4//24", "1.2.3.4/-1",
    "::1/0128", "1.2.3.4.5/24", "2001:db8::g/64", "1.2.3.4/99999999999999999999",
])
def test_parse_prefix_is_ipaddress_on_edge_cases(text: str) -> None:
    assert parse_prefix(text) == _reference(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 130))
def test_parse_prefix_is_ipaddress_on_any_address_and_length(addr: object, plen: int) -> None:
    text = f"{addr}/{plen}"
    assert parse_prefix(text) == _reference(text)


def test_a_table_of_parsed_networks_is_the_table_of_their_text() -> None:
    nets = [n for n in (parse_prefix(t) for t, _ in TABLE) if n is not None]
    parsed = PrefixTable.of_networks(zip(nets, [v for _, v in TABLE], strict=True))
    assert parsed.same_entries(PrefixTable(TABLE)) and len(parsed) == len(TABLE)
