"""The compiled DNS mapping answers byte for byte what the reference `select` path does:
every network of the MaxMind test data, a large random sample, prefix edge cases."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from typing import Any

import dns.edns
import dns.message
import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering import compiled
from steering.compiled import CompiledMap, build_tables
from steering.dns_answer import Responder, ZoneConfig
from steering.geo import Geo
from steering.select import Policy, select
from steering.view import SteeringView, build_view
from tests.steering.conftest import ASN, CITY, standard_appliances
from tests.steering.fakes import appliance
from vcdn.schemas import ApplianceView, decode

GEO = Geo(CITY, ASN)
POLICY = Policy(default_site="lon")
EDGE_PREFIXES = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.1.3.0/26",
                 "2001:db8:100::/48", "2001:db8:100:ab00::/56", "2001:db8:200::/40"]


def items() -> list[dict[str, Any]]:
    """Sites with IPv4 and IPv6 appliances, nested prefixes, one site over saturation
    (sheds a share: the per-client fallback) and one far over it (sheds everyone)."""
    out = standard_appliances()
    out += [
        appliance("v6-1", "fra", "http://[2001:db8::1]:8080", lat=50.1, lon=8.7,
                  prefixes=["10.1.0.0/16", "2001:db8:100::/48"]),
        appliance("v6-2", "fra", "http://[2001:db8::2]:8080", lat=50.1, lon=8.7, rps=9000.0),
        appliance("v6-3", "fra", "http://[2001:db8::3]:8080", lat=50.1, lon=8.7),
        appliance("nyc-1", "nyc", "http://127.0.5.1:8080", lat=40.7, lon=-74.0,
                  prefixes=["10.0.0.0/8", "10.1.2.128/25", "2001:db8:100:ab00::/56"]),
        appliance("nyc-2", "nyc", "http://[2001:db8::5]:8080", lat=40.7, lon=-74.0),
        appliance("hot-1", "hot", "http://127.0.6.1:8080", lat=35.7, lon=139.7, rps=18000.0,
                  prefixes=["10.1.2.0/24", "2001:db8:200::/40"]),
        appliance("hot-2", "hot", "http://127.0.6.2:8080", lat=35.7, lon=139.7, rps=18000.0),
        appliance("full-1", "full", "http://127.0.7.1:8080", lat=-33.9, lon=151.2,
                  rps=40000.0, prefixes=["10.1.3.0/26"]),
    ]
    return out


SPREAD_PREFIXES = ["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16", "2001:db8:f00::/40"]


def spread_items() -> list[dict[str, Any]]:
    """Sites of four appliances with distinct loads, none saturated: the first site alone
    fills every answer, ranked per client /24 (/56), the compiled path's common case."""
    out = []
    for s in range(3):
        out += [appliance(f"s{s}-{j}", f"s{s}", f"http://127.0.{10 + s}.{j + 1}:8080",
                          lat=-40.0 + 30 * s, lon=-100.0 + 60 * s, rps=500.0 * j,
                          prefixes=[SPREAD_PREFIXES[s]] if j == 0 else [])
                for j in range(4)]
    out += [appliance(f"v6-{j}", "v6", f"http://[2001:db8:ff::{j + 1}]:8080", lat=48.0,
                      lon=2.0, rps=700.0 * j, prefixes=[SPREAD_PREFIXES[3]] if j == 0 else [])
            for j in range(4)]
    return out


def make(view: SteeringView, policy: Policy = POLICY) -> tuple[Responder, Responder]:
    zone = ZoneConfig.make("cdn.example.")

    def decide(c: Any) -> Any:
        return select(c, view, GEO, policy, depth=2)

    compiled = CompiledMap(view, GEO, policy, answers=2, ttl=zone.ttl,
                           udp_payload=zone.udp_payload)
    return Responder(zone, decide), Responder(zone, decide, compiled)


@pytest.fixture(scope="module")
def pair() -> tuple[Responder, Responder]:
    return make(build_view([decode(ApplianceView, a) for a in items()]))


@pytest.fixture(scope="module")
def spread() -> tuple[Responder, Responder]:
    return make(build_view([decode(ApplianceView, a) for a in spread_items()]),
                Policy(default_site="s0"))


def query(net: str, rdtype: str, name: str = "edge.cdn.example.") -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0,
                               options=[dns.edns.ECSOption.from_text(net)])
    return q.to_wire()


def networks(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterator[str]:
    """The client networks (/24; /48 and /56) at both ends of `net`, and just outside."""
    sources = (24,) if net.version == 4 else (48, 56)
    width = net.max_prefixlen
    lo, hi = int(net.network_address), int(net.broadcast_address)
    for s in sources:
        for a in (lo - (1 << (width - s)), lo, hi, hi + (1 << (width - s))):
            if 0 <= a < 1 << width:
                yield str(ipaddress.ip_network((a >> (width - s) << (width - s), s)))


def check(pair: tuple[Responder, Responder], nets: Iterator[str] | list[str]) -> int:
    ref, fast = pair
    n = 0
    for net in nets:
        for rdtype, name in (("A", "edge.cdn.example."), ("AAAA", "EdGe.CDN.example.")):
            q = query(net, rdtype, name)
            assert fast.answer(q, "192.0.2.1") == ref.answer(q, "192.0.2.1"), (net, rdtype)
            n += 1
    return n


def test_every_maxmind_test_network_answers_as_the_reference(
        pair: tuple[Responder, Responder]) -> None:
    before = pair[1].compiled_answers
    total = 0
    for path in (CITY, ASN):
        with maxminddb.open_database(str(path)) as reader:
            for network, _record in reader:
                total += check(pair, networks(network))
    assert total > 2000
    assert pair[1].compiled_answers - before > total // 2  # the compiled path did answer


def test_random_sample_answers_as_the_reference(pair: tuple[Responder, Responder]) -> None:
    rng = random.Random(15)
    nets = []
    for _ in range(2500):
        nets.append(str(ipaddress.ip_network((rng.getrandbits(32) >> 8 << 8, 24))))
        s = rng.choice((48, 56))
        nets.append(str(ipaddress.ip_network((rng.getrandbits(128) >> (128 - s) << (128 - s),
                                              s))))
    for p in EDGE_PREFIXES:  # dense sampling inside the nested prefixes
        net = ipaddress.ip_network(p)
        s = 24 if net.version == 4 else 56
        for _ in range(120):
            a = int(net.network_address) + rng.randrange(net.num_addresses)
            w = net.max_prefixlen
            nets.append(str(ipaddress.ip_network((a >> (w - s) << (w - s), s))))
    before = pair[1].compiled_answers
    check(pair, nets)
    assert pair[1].compiled_answers - before > len(nets)


def test_spread_sites_answer_as_the_reference(spread: tuple[Responder, Responder]) -> None:
    rng = random.Random(16)
    nets = [str(ipaddress.ip_network((rng.getrandbits(32) >> 8 << 8, 24))) for _ in range(400)]
    nets += [str(ipaddress.ip_network((0x20010DB80F00 << 80 | rng.getrandbits(32) << 72, 56)))
             for _ in range(100)]
    nets += [f"10.{s}.{rng.randrange(256)}.0/24" for s in range(3) for _ in range(50)]
    before = spread[1].compiled_answers
    check(spread, nets)
    assert spread[1].compiled_answers - before > len(nets)


def test_prefix_edges_longest_match_and_ipv6(pair: tuple[Responder, Responder]) -> None:
    for p in EDGE_PREFIXES:
        check(pair, networks(ipaddress.ip_network(p)))
    _ref, fast = pair
    # Longest match: 10.1.2.128/25 (nyc) inside 10.1.2.0/24 (hot) inside 10.1.0.0/16 (fra).
    inner = dns.message.from_wire(fast.answer(query("10.1.2.0/24", "A"), "192.0.2.1") or b"")
    assert next(r.address for r in inner.answer[0]).startswith("127.0.6.")
    six = dns.message.from_wire(fast.answer(query("2001:db8:100:ab00::/56", "AAAA"),
                                            "192.0.2.1") or b"")
    assert next(r.address for r in six.answer[0]) == "2001:db8::5"


def _answer(r: Responder, net: str, rdtype: str) -> tuple[list[str], int]:
    m = dns.message.from_wire(r.answer(query(net, rdtype), "192.0.2.1") or b"")
    (ecs,) = [o for o in m.options if o.otype == dns.edns.OptionType.ECS]
    return [rd.address for rr in m.answer for rd in rr], ecs.scopelen  # type: ignore[attr-defined]


def test_ecs_scope_tells_the_truth(pair: tuple[Responder, Responder]) -> None:
    """RFC 7871 §7.2.1: every client network inside the answered scope gets that answer."""
    _ref, fast = pair
    rng = random.Random(7)
    wide = 0
    for _ in range(300):
        a = rng.getrandbits(32) >> 8 << 8
        addrs, scope = _answer(fast, str(ipaddress.ip_network((a, 24))), "A")
        assert 0 <= scope <= 24
        if scope < 24:
            wide += 1
            base = a >> (32 - scope) << (32 - scope) if scope else 0
            for _ in range(3):
                other = base + (rng.randrange(1 << (24 - scope)) << 8)
                assert _answer(fast, str(ipaddress.ip_network((other, 24))), "A")[0] == addrs
    # Narrow answers happen where a site spreads /24s over appliances; wide ones elsewhere.
    assert _answer(fast, "10.1.2.128/24", "A")[1] == 24
    assert wide > 0


def test_a_new_view_recompiles_and_reuses_unchanged_tables() -> None:
    view = build_view([decode(ApplianceView, a) for a in items()])
    first = CompiledMap(view, GEO, POLICY, answers=2, ttl=20, udp_payload=1232)
    changed = items()
    for a in changed:
        if a["id"] == "nyc-2":
            a["state"] = "stale"
    view2 = build_view([decode(ApplianceView, a) for a in changed])
    same = build_tables(view2, GEO, first.tables)
    assert same is first.tables  # same prefixes and MaxMind data: stage 1 kept
    ref, fast = make(view2)
    check((ref, fast), ["10.1.2.0/24", "10.1.2.128/24", "2001:db8:200::/48"])


def _mutations() -> Iterator[tuple[str, bytes]]:
    """Queries one byte away from the plain ECS shape the compiled path matches by its
    bytes: each must get what the general path gives (parse, dnspython), not a steered
    answer by accident."""
    q = query("81.2.69.0/24", "A")
    n = len(b"\x04edge\x03cdn\x07example\x00")
    yield "plain", q
    yield "trailing byte", q + b"\x00"
    yield "one byte short", q[:-1]
    yield "scope set", q[: 34 + n] + b"\x05" + q[35 + n :]
    yield "family 3", q[: 31 + n] + b"\x00\x03" + q[33 + n :]
    yield "source 23", q[: 33 + n] + b"\x17" + q[34 + n :]
    yield "EDNS version 1", q[: 22 + n] + b"\x01" + q[23 + n :]
    yield "class CH", q[: 14 + n] + b"\x00\x03" + q[16 + n :]
    yield "type MX", q[: 12 + n] + b"\x00\x0f" + q[14 + n :]
    yield "not an OPT", q[: 17 + n] + b"\x00\x01" + q[19 + n :]
    yield "option 10", q[: 27 + n] + b"\x00\x0a" + q[29 + n :]
    yield "two additional", q[:10] + b"\x00\x02" + q[12:]
    yield "a response", q[:2] + bytes([q[2] | 0x80]) + q[3:]
    yield "TC set", q[:2] + bytes([q[2] | 0x02]) + q[3:]
    yield "opcode 2", q[:2] + bytes([q[2] | 0x10]) + q[3:]
    yield "payload 100", q[: 19 + n] + b"\x00\x64" + q[21 + n :]
    yield "other name", q[:13] + b"EDGX" + q[17:]
    yield "upper case", q[:13] + b"EDGE" + q[17:]
    six = query("2001:db8:100::/48", "AAAA")
    yield "ipv6 /48", six
    yield "ipv6 /48 scope set", six[: 34 + n] + b"\x30" + six[35 + n :]


@pytest.mark.parametrize(("case", "q"), list(_mutations()), ids=[c for c, _ in _mutations()])
def test_queries_near_the_plain_shape_answer_as_the_general_path(
    pair: tuple[Responder, Responder], spread: tuple[Responder, Responder], case: str,
    q: bytes
) -> None:
    for ref, fast in (pair, spread):
        assert fast.answer(q, "192.0.2.1") == ref.answer(q, "192.0.2.1"), case


def _case(name: bytes, rng: random.Random) -> bytes:
    """`name` (wire form) with each letter's case drawn at random (0x20)."""
    return bytes(b ^ 0x20 if 0x61 <= b <= 0x7A and rng.random() < 0.5 else b for b in name)


@st.composite
def plain_queries(draw: st.DrawFn) -> bytes:
    """Queries in the plain shape the compiled path reads by offsets (random ID, RD bit,
    0x20 name, A or AAAA, EDNS payload and flags, ECS /24, /48 or /56 anywhere, or near a
    registered prefix), sometimes with one byte changed anywhere."""
    version = draw(st.sampled_from((4, 6)))
    source = 24 if version == 4 else draw(st.sampled_from((48, 56)))
    width = 32 if version == 4 else 128
    if draw(st.booleans()):
        base = ipaddress.ip_network(draw(st.sampled_from(
            [p for p in EDGE_PREFIXES + SPREAD_PREFIXES
             if ipaddress.ip_network(p).version == version])))
        addr = int(base.network_address) + draw(st.integers(0, base.num_addresses - 1))
    else:
        addr = draw(st.integers(0, (1 << width) - 1))
    raw = (addr >> (width - source)).to_bytes(source // 8, "big")
    ecs = bytes([0, 1 if version == 4 else 2, source, 0]) + raw
    name = _case(b"\x04edge\x03cdn\x07example\x00", random.Random(draw(st.integers())))
    qtype = draw(st.sampled_from((b"\x00\x01", b"\x00\x1c")))
    opt = (b"\x00\x00\x29" + draw(st.integers(0, 65535)).to_bytes(2, "big") + b"\x00\x00"
           + draw(st.sampled_from((b"\x00\x00", b"\x80\x00")))
           + (4 + len(ecs)).to_bytes(2, "big") + b"\x00\x08"
           + len(ecs).to_bytes(2, "big") + ecs)
    q = (draw(st.binary(min_size=2, max_size=2)) + draw(st.sampled_from((b"\x00", b"\x01")))
         + b"\x00\x00\x01\x00\x00\x00\x00\x00\x01" + name + qtype + b"\x00\x01" + opt)
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(2, len(q) - 1))
        q = q[:at] + bytes([draw(st.integers(0, 255))]) + q[at + 1 :]
    return q


@settings(max_examples=400, deadline=None)
@given(plain_queries())
def test_fast_path_equals_the_full_path_for_random_queries(
        pair: tuple[Responder, Responder], spread: tuple[Responder, Responder],
        q: bytes) -> None:
    """Whatever a query holds, the compiled path's bytes (read by offsets) are the full
    path's (parse, `select`, dnspython for anything else), or both say nothing; in both
    views (the nested prefixes and shedding sites; the spread sites' common case)."""
    for ref, fast in (pair, spread):
        assert fast.answer(q, "192.0.2.1") == ref.answer(q, "192.0.2.1")


def test_many_payload_sizes_keep_the_layouts_bounded_and_answers_right() -> None:
    """Every EDNS payload size makes a layout of its own: a requester cycling through
    them fills the kept layouts up to their bound and is still answered right."""
    ref, fast = make(build_view([decode(ApplianceView, a) for a in spread_items()]),
                     Policy(default_site="s0"))
    base = query("10.1.7.0/24", "A")
    at = base.index(b"\x00\x00\x29") + 3  # the OPT record's CLASS: the payload size
    for size in range(512, 512 + compiled.MAX_KNOWN + 200):
        q = base[:at] + size.to_bytes(2, "big") + base[at + 2 :]
        assert fast.answer(q, "192.0.2.1") == ref.answer(q, "192.0.2.1")
    assert fast._compiled is not None
    assert len(fast._compiled._known) == compiled.MAX_KNOWN
    assert fast.compiled_answers == compiled.MAX_KNOWN + 200


def test_only_a_lower_case_name_is_answered_from_the_exact_bytes() -> None:
    """A repeat of the name as registered comes from the exact-bytes dict; a 0x20-cased
    one, never kept there, is compiled each time."""
    fast = make(build_view([decode(ApplianceView, a) for a in spread_items()]),
                Policy(default_site="s0"))[1]
    lower, mixed = query("10.1.8.0/24", "A"), query("10.1.8.0/24", "A", "EdGe.cdn.example.")
    for q in (lower, mixed, lower, mixed):
        fast.answer(q, "192.0.2.1")
    assert (fast.hits, fast.compiled_answers) == (1, 3)
