"""The hand-written query parser agrees with dnspython and declines what it cannot read."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering import dns_wire

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=5).map(lambda ls: ".".join(ls) + ".")
rdtypes = st.sampled_from(["A", "AAAA", "SOA", "NS", "ANY", "MX", "TXT", "HINFO", "CAA"])


@st.composite
def ecs_options(draw: st.DrawFn) -> dns.edns.ECSOption:
    if draw(st.booleans()):
        addr = ".".join(str(draw(st.integers(0, 255))) for _ in range(4))
        return dns.edns.ECSOption(addr, draw(st.integers(0, 32)))
    groups = ":".join(f"{draw(st.integers(0, 0xFFFF)):x}" for _ in range(8))
    return dns.edns.ECSOption(groups, draw(st.integers(0, 128)))


@settings(max_examples=200, deadline=None)
@given(names, rdtypes, st.booleans(), st.one_of(st.none(), ecs_options()),
       st.integers(0, 65535), st.booleans())
def test_parser_agrees_with_dnspython(name: str, rdtype: str, use_edns: bool,
                                      ecs: dns.edns.ECSOption | None, payload: int,
                                      rd: bool) -> None:
    opts = [ecs] if (ecs is not None and use_edns) else []
    q = dns.message.make_query(name, rdtype, use_edns=0 if use_edns else None,
                               options=opts, payload=payload)
    if not rd:
        q.flags &= ~dns.flags.RD
    wire = q.to_wire()
    p = dns_wire.parse(wire)
    assert p is not None
    ref = dns.message.from_wire(wire)
    assert p.qtype == ref.question[0].rdtype and p.qclass == ref.question[0].rdclass
    assert dns_wire.qname_labels(p.question) == [
        lbl.lower() for lbl in ref.question[0].name.labels if lbl
    ]
    assert p.edns == (ref.edns >= 0)
    assert p.payload == (max(512, ref.payload) if ref.edns >= 0 else 512)
    if opts:
        assert p.ecs is not None
        version, _addr, source = dns_wire.ecs_network(p.ecs)
        assert source == ecs.srclen and version == (4 if ecs.family == 1 else 6)
        assert p.ecs == ref.options[0].to_wire()
    else:
        assert p.ecs is None


def _query(**kw: object) -> bytes:
    return dns.message.make_query("edge.cdn.example.", "A", **kw).to_wire()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("why", "wire"),
    [
        ("empty", b""),
        ("header only", _query()[:12]),
        ("truncated question", _query()[:20]),
        ("trailing junk", _query() + b"\x00"),
        ("a response (QR=1)", _query()[:2] + b"\x80" + _query()[3:]),
        ("opcode NOTIFY", _query()[:2] + bytes([4 << 3]) + _query()[3:]),
        ("two questions", _query()[:4] + b"\x00\x02" + _query()[6:]),
        ("compressed qname", _query()[:12] + b"\xc0\x0c\x00\x01\x00\x01"),
        ("EDNS version 1", _query(use_edns=1)),
        ("oversized", _query() + bytes(5000)),
    ],
)
def test_unusual_queries_go_to_the_careful_path(why: str, wire: bytes) -> None:
    assert dns_wire.parse(wire) is None, why


@pytest.mark.parametrize(
    ("why", "data"),
    [
        ("unknown family", b"\x00\x03\x18\x00\x01\x02\x03"),
        ("source longer than IPv4", b"\x00\x01\x21\x00\x01\x02\x03\x04\x05"),
        ("scope set in a query", b"\x00\x01\x18\x10\x01\x02\x03"),
        ("address too long for /24", b"\x00\x01\x18\x00\x01\x02\x03\x04"),
        ("bits past the prefix set", b"\x00\x01\x17\x00\x01\x02\x03"),
        ("too short", b"\x00\x01"),
    ],
)
def test_invalid_client_subnet_options_are_rejected(why: str, data: bytes) -> None:
    assert not dns_wire.valid_ecs(data), why


def test_ecs_source_zero_is_valid_and_carries_no_address() -> None:
    assert dns_wire.valid_ecs(b"\x00\x01\x00\x00")
    assert dns_wire.ecs_network(b"\x00\x01\x00\x00") == (4, 0, 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_parser_never_raises_on_random_bytes(data: bytes) -> None:
    dns_wire.parse(data)
