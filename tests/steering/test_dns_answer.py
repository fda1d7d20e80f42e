"""DNS answers, in process: rcodes, flags, ECS echo and scope, truncation, the cache."""

from __future__ import annotations

from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering.dns_answer import Responder, ZoneConfig
from steering.geo import Geo
from steering.select import Policy, select
from steering.view import build_view
from tests.steering.conftest import ASN, CITY, standard_appliances
from tests.steering.fakes import appliance
from vcdn.schemas import ApplianceView, decode

GEO = Geo(CITY, ASN)
RESOLVER = "216.160.83.56"  # Milton, WA → Seattle when the resolver's own address counts


def responder(items: list[dict[str, Any]] | None = None, **zone: Any) -> Responder:
    view = build_view([decode(ApplianceView, a) for a in (items or standard_appliances())])
    depth = zone.get("answers", 2)
    return Responder(ZoneConfig.make("cdn.example.", **zone),
                     lambda c: select(c, view, GEO, Policy(default_site="lon"), depth=depth))


def ask(r: Responder, name: str, rdtype: str = "A", ecs: str | None = None,
        ip: str = RESOLVER, tcp: bool = False, **kw: Any) -> dns.message.Message:
    if ecs:
        kw.update(use_edns=0, options=[dns.edns.ECSOption.from_text(ecs)])
    q = dns.message.make_query(name, rdtype, **kw)
    wire = r.answer(q.to_wire(), ip, tcp=tcp)
    assert wire is not None
    m = dns.message.from_wire(wire)
    assert m.id == q.id
    return m


def addresses(m: dns.message.Message) -> list[str]:
    return [rd.address for rrset in m.answer for rd in rrset]


def ecs_of(m: dns.message.Message) -> dns.edns.ECSOption:
    (opt,) = [o for o in m.options if o.otype == dns.edns.OptionType.ECS]
    return opt  # type: ignore[return-value]


def test_registered_prefix_answers_the_isp_appliances_with_aa_and_no_ra() -> None:
    m = ask(responder(), "edge.cdn.example.", ecs="81.2.69.142/32")
    assert m.rcode() == dns.rcode.NOERROR
    assert m.flags & dns.flags.AA and not m.flags & dns.flags.RA
    assert sorted(addresses(m)) == ["127.0.1.1", "127.0.1.2"]
    assert m.answer[0].ttl == 20


def test_ecs_overrides_the_resolver_address() -> None:
    r = responder()
    assert addresses(ask(r, "edge.cdn.example."))[0] == "127.0.4.1"  # resolver in WA
    assert addresses(ask(r, "edge.cdn.example.", ecs="89.160.20.0/24"))[0] == "127.0.2.1"


def test_ecs_is_echoed_with_the_scope_the_answer_depended_on() -> None:
    r = responder()
    opt = ecs_of(ask(r, "edge.cdn.example.", ecs="81.2.69.0/24"))
    assert (opt.address, opt.srclen, opt.scopelen) == ("81.2.69.0", 24, 24)
    # Linköping is in ASN 29518's /17; Stockholm has one appliance, so the second answer
    # is one of London's two, picked by hashing the client's /24: the scope is 24.
    opt = ecs_of(ask(r, "edge.cdn.example.", ecs="89.160.20.0/24"))
    assert (opt.srclen, opt.scopelen) == (24, 24)


def test_ecs_scope_widens_to_the_database_network_when_nothing_else_varies() -> None:
    items = [appliance("sto-1", "sto", "http://127.0.2.1", asn=29518, lat=59.3, lon=18.1),
             appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1)]
    m = ask(responder(items), "edge.cdn.example.", ecs="89.160.20.0/24")
    assert addresses(m) == ["127.0.2.1", "127.0.3.1"]
    assert (ecs_of(m).srclen, ecs_of(m).scopelen) == (24, 17)  # the ASN database's /17


def test_ecs_source_zero_uses_the_resolver_and_answers_scope_zero() -> None:
    m = ask(responder(), "edge.cdn.example.", ecs="0.0.0.0/0")
    assert addresses(m)[0] == "127.0.4.1"
    assert (ecs_of(m).srclen, ecs_of(m).scopelen) == (0, 0)


def test_answers_that_do_not_depend_on_the_client_have_scope_zero() -> None:
    m = ask(responder(), "cdn.example.", "SOA", ecs="81.2.69.0/24")
    assert m.answer and ecs_of(m).scopelen == 0


def test_names_outside_the_zone_are_refused_without_aa() -> None:
    for name in ("example.org.", "cdn.example.com.", "example."):
        m = ask(responder(), name)
        assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.AA
        assert not m.answer


def test_unknown_name_in_zone_is_nxdomain_with_soa() -> None:
    m = ask(responder(), "nothing.cdn.example.")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA
    assert m.authority[0].rdtype == dns.rdatatype.SOA


def test_known_name_other_type_is_nodata_with_soa() -> None:
    m = ask(responder(), "edge.cdn.example.", "MX")
    assert m.rcode() == dns.rcode.NOERROR and not m.answer
    assert m.authority[0].rdtype == dns.rdatatype.SOA


def test_apex_serves_soa_and_ns_and_any_is_minimised() -> None:
    r = responder()
    assert ask(r, "cdn.example.", "NS").answer[0][0].target.to_text() == "ns1.cdn.example."
    m = ask(r, "cdn.example.", "ANY")
    assert len(m.answer) == 1  # RFC 8482: one RRset, not everything
    assert len(ask(r, "edge.cdn.example.", "ANY").answer) == 1


def test_aaaa_answers_ipv6_appliances() -> None:
    m = ask(responder(), "edge.cdn.example.", "AAAA")
    assert addresses(m) == ["::1"]


def test_letter_case_of_the_question_is_echoed_from_cache() -> None:
    r = responder()
    ask(r, "edge.cdn.example.")
    m = ask(r, "EdGe.CDN.example.")
    assert m.question[0].name.to_text() == "EdGe.CDN.example."
    assert m.answer[0].name.to_text() == "EdGe.CDN.example."
    assert r.hits >= 1


def test_cache_splices_id_and_rd_per_query() -> None:
    r = responder()
    a = ask(r, "edge.cdn.example.", ecs="81.2.69.0/24")
    q = dns.message.make_query("edge.cdn.example.", "A", use_edns=0,
                               options=[dns.edns.ECSOption.from_text("81.2.69.0/24")])
    q.flags &= ~dns.flags.RD
    q.id = 4242
    b = dns.message.from_wire(r.answer(q.to_wire(), RESOLVER) or b"")
    assert b.id == 4242 and not b.flags & dns.flags.RD and a.flags & dns.flags.RD
    assert addresses(a) == addresses(b)


def test_new_view_invalidates_cached_answers() -> None:
    r = responder()
    assert addresses(ask(r, "edge.cdn.example.", ecs="81.2.69.0/24"))[0].startswith("127.0.1.")
    items = standard_appliances()
    for a in items:
        if a["site"] == "isp":
            a["state"] = "stale"
    view = build_view([decode(ApplianceView, a) for a in items])
    r.set_decide(lambda c: select(c, view, GEO, Policy(default_site="lon"), depth=2))
    assert not any(x.startswith("127.0.1.") for x in
                   addresses(ask(r, "edge.cdn.example.", ecs="81.2.69.0/24")))


def _big_responder() -> Responder:
    items = [appliance(f"lon-{i}", "lon", f"http://127.0.3.{i}", lat=51.5, lon=-0.1)
             for i in range(1, 41)]
    return responder(items, answers=40)


def test_too_big_for_udp_sets_tc_with_no_answers() -> None:
    m = ask(_big_responder(), "edge.cdn.example.")  # no EDNS: 512 bytes
    assert m.flags & dns.flags.TC and not m.answer


def test_edns_payload_lets_the_full_answer_through() -> None:
    m = ask(_big_responder(), "edge.cdn.example.", use_edns=0, payload=4096)
    assert not m.flags & dns.flags.TC and len(addresses(m)) == 40


def test_tcp_gives_the_full_answer() -> None:
    m = ask(_big_responder(), "edge.cdn.example.", tcp=True)
    assert not m.flags & dns.flags.TC and len(addresses(m)) == 40


def test_edns_version_one_gets_badvers() -> None:
    m = ask(responder(), "edge.cdn.example.", use_edns=1)
    assert m.rcode() == dns.rcode.BADVERS


def test_other_opcodes_get_notimp() -> None:
    q = dns.message.make_query("edge.cdn.example.", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    wire = responder().answer(q.to_wire(), RESOLVER)
    assert wire is not None and wire[3] & 0x0F == dns.rcode.NOTIMP


@pytest.mark.parametrize(
    ("why", "ecs_data"),
    [("scope set", b"\x00\x01\x18\x08\x51\x02\x45"),
     ("bits past prefix", b"\x00\x01\x0c\x00\x51\xff"),
     ("bad family", b"\x00\x07\x08\x00\x51")],
)
def test_malformed_client_subnet_gets_formerr(why: str, ecs_data: bytes) -> None:
    q = dns.message.make_query("edge.cdn.example.", "A", use_edns=0,
                               options=[dns.edns.GenericOption(8, ecs_data)])
    wire = responder().answer(q.to_wire(), RESOLVER)
    assert wire is not None and wire[3] & 0x0F == dns.rcode.FORMERR, why


@pytest.mark.parametrize(
    ("why", "wire", "expect"),
    [
        ("shorter than a header", b"\x12\x34\x01", None),
        ("a response", b"\x12\x34\x84\x00" + bytes(8), None),
        ("header then junk", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff", 1),
        ("no question", b"\x12\x34\x01\x00" + bytes(8), 1),
    ],
)
def test_junk_gets_formerr_or_silence(why: str, wire: bytes, expect: int | None) -> None:
    out = responder().answer(wire, RESOLVER)
    if expect is None:
        assert out is None, why
    else:
        assert out is not None and out[:2] == wire[:2] and out[3] & 0x0F == expect, why


def test_ns_name_serves_its_glue_addresses() -> None:
    m = ask(responder(ns_addresses=("192.0.2.53",)), "ns1.cdn.example.")
    assert addresses(m) == ["192.0.2.53"]


def test_exact_repeat_cache_keeps_transport_and_requester_apart() -> None:
    r = _big_responder()
    wire = dns.message.make_query("edge.cdn.example.", "A").to_wire()
    for _ in range(2):  # the second round comes from the caches
        assert dns.message.from_wire(r.answer(wire, RESOLVER) or b"").flags & dns.flags.TC
        full = dns.message.from_wire(r.answer(wire, RESOLVER, tcp=True) or b"")
        assert len(addresses(full)) == 40
    small = responder()
    seattle = addresses(dns.message.from_wire(small.answer(wire, RESOLVER) or b""))
    london = addresses(dns.message.from_wire(small.answer(wire, "81.2.69.142") or b""))
    assert seattle[0] == "127.0.4.1" and london != seattle
    again = wire[:2] + wire[2:]
    assert addresses(dns.message.from_wire(small.answer(again, RESOLVER) or b"")) == seattle
    other_id = b"\x99\x98" + wire[2:]
    assert (small.answer(other_id, RESOLVER) or b"")[:2] == b"\x99\x98"


def test_ipv6_client_subnet_maps_by_prefix_and_is_echoed() -> None:
    r = responder()
    m = ask(r, "edge.cdn.example.", ecs="2001:db8:100::/56")  # the ISP's 2001:db8:100::/48
    assert sorted(addresses(m)) == ["127.0.1.1", "127.0.1.2"]
    opt = ecs_of(m)
    assert (opt.family, opt.address, opt.srclen) == (2, "2001:db8:100::", 56)
    assert 48 <= opt.scopelen <= 56
    assert addresses(ask(r, "edge.cdn.example.", "AAAA", ecs="2001:db8:100::/56")) == ["::1"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["edge", "EDGE", "Edge", "ns1", "x", "cdn", "example", "org"]),
             min_size=0, max_size=4),
    st.sampled_from(["A", "AAAA", "SOA", "NS", "ANY", "MX", "TXT"]),
    st.one_of(st.none(), st.sampled_from(["81.2.69.0/24", "89.160.20.112/32", "0.0.0.0/0",
                                          "2001:db8:100::/56", "10.1.0.0/16"])),
    st.sampled_from(["cdn.example.", "CDN.Example.", "example.org."]),
)
def test_every_response_is_well_formed_and_echoes_the_question(
    labels: list[str], rdtype: str, ecs: str | None, suffix: str
) -> None:
    """Whatever the path (exact cache, question cache, hand-built, dnspython), dnspython
    reads the response back, the ID and question match, and only the expected rcodes
    appear; asking twice gives the same bytes after the ID."""
    r = RESPONDER
    name = ".".join([*labels, suffix.rstrip(".")]) + "."
    kw: dict[str, Any] = {}
    if ecs:
        kw = {"use_edns": 0, "options": [dns.edns.ECSOption.from_text(ecs)]}
    q = dns.message.make_query(name, rdtype, **kw)
    first = r.answer(q.to_wire(), RESOLVER)
    second = r.answer(q.to_wire(), RESOLVER)
    assert first is not None and first[2:] == (second or b"")[2:]
    m = dns.message.from_wire(first)
    assert m.id == q.id and m.flags & dns.flags.QR
    assert m.question[0].name.to_text() == name  # letter case kept
    assert m.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)
    if ecs:
        assert ecs_of(m).srclen == dns.edns.ECSOption.from_text(ecs).srclen


RESPONDER = responder()
