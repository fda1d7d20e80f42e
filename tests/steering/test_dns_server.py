"""The real `vcdn steering` process on loopback, asked by dig, kdig and dnspython."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from tests.conftest import require_tool
from tests.steering.conftest import (
    SteeringProc,
    standard_appliances,
    start_steering,
    stop_steering,
    wait_for,
)
from tests.steering.fakes import FakeControl, appliance

EDGE = "edge.cdn.example."


@pytest.fixture(scope="module")
def shared() -> Iterator[SteeringProc]:
    """One steering process for the tests that only read (the fuzz test runs last)."""
    fake = FakeControl().start()
    fake.appliances = standard_appliances()
    sp = start_steering(fake.url)
    yield sp
    stop_steering(sp)
    fake.stop()


def dig(tool: str, sp: SteeringProc, *args: str) -> str:
    exe = require_tool(tool)
    limits = ["+time=2", "+tries=1"] if tool == "dig" else ["+timeout=2", "+retry=0"]
    out = subprocess.run([exe, "@127.0.0.1", "-p", str(sp.dns_port), *limits, *args],
                         capture_output=True, text=True, timeout=20)
    return out.stdout


def answers(text: str) -> list[str]:
    """The A addresses in dig's or kdig's answer section."""
    return [line.split()[-1] for line in text.splitlines()
            if line and not line.startswith(";") and len(line.split()) == 5
            and line.split()[-2] == "A"]


def query(sp: SteeringProc, name: str = EDGE, rdtype: str = "A",
          ecs: str | None = None) -> dns.message.Message:
    kw = {"use_edns": 0, "options": [dns.edns.ECSOption.from_text(ecs)]} if ecs else {}
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    return dns.query.udp(q, "127.0.0.1", port=sp.dns_port, timeout=2)


def addrs(m: dns.message.Message) -> list[str]:
    return [rd.address for rrset in m.answer for rd in rrset]


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_subnet_from_maxmind_and_prefix_data_maps_to_the_right_site(
    tool: str, shared: SteeringProc
) -> None:
    # Registered ISP prefix 81.2.69.0/24 → the ISP's appliances.
    out = dig(tool, shared, "edge.cdn.example", "+subnet=81.2.69.142/32")
    assert sorted(answers(out)) == ["127.0.1.1", "127.0.1.2"]
    assert "81.2.69.142/32/24" in out  # ECS echoed with scope 24
    # ASN 29518 (MaxMind test data) → the Stockholm site's appliance first.
    assert answers(dig(tool, shared, "edge.cdn.example", "+subnet=89.160.20.112/32"))[0] \
        == "127.0.2.1"
    # Milton, WA → Seattle.
    assert answers(dig(tool, shared, "edge.cdn.example", "+subnet=216.160.83.56/32"))[0] \
        == "127.0.4.1"


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_refused_outside_the_zone_and_nxdomain_inside(tool: str, shared: SteeringProc) -> None:
    out = dig(tool, shared, "www.example.org", "A")
    assert "REFUSED" in out and " aa" not in out.split("QUERY")[1].split(";")[0]
    out = dig(tool, shared, "missing.cdn.example", "A")
    assert "NXDOMAIN" in out and "SOA" in out


def test_dnspython_resolver_gets_the_answer(shared: SteeringProc) -> None:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = shared.dns_port
    res.timeout = res.lifetime = 3
    got = res.resolve(EDGE, "A")
    assert len(list(got)) == 2
    soa = res.resolve("cdn.example.", "SOA")
    assert str(soa[0].mname) == "ns1.cdn.example."


def test_tcp_and_udp_answer_the_same(shared: SteeringProc) -> None:
    q = dns.message.make_query(EDGE, "A", use_edns=0,
                               options=[dns.edns.ECSOption.from_text("81.2.69.0/24")])
    udp = dns.query.udp(q, "127.0.0.1", port=shared.dns_port, timeout=2)
    tcp = dns.query.tcp(q, "127.0.0.1", port=shared.dns_port, timeout=2)
    assert addrs(udp) == addrs(tcp) and addrs(udp)


def test_tcp_answers_pipelined_queries_on_one_connection(shared: SteeringProc) -> None:
    """RFC 7766 §6.2.1: several queries on one connection, answered in turn."""
    qs = [dns.message.make_query(EDGE, "A", use_edns=0,
                                 options=[dns.edns.ECSOption.from_text(net)])
          for net in ("81.2.69.0/24", "216.160.83.56/32", "89.160.20.112/32")]
    with socket.create_connection(("127.0.0.1", shared.dns_port), timeout=3) as c:
        c.sendall(b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in qs)))
        buf = b""
        got = []
        while len(got) < len(qs):
            chunk = c.recv(65535)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                n = int.from_bytes(buf[:2], "big")
                got.append(dns.message.from_wire(buf[2 : 2 + n]))
                buf = buf[2 + n :]
    assert [m.id for m in got] == [q.id for q in qs]
    assert [addrs(m)[0][:8] for m in got] == ["127.0.1.", "127.0.4.", "127.0.2."]


@pytest.fixture
def big(control: FakeControl) -> Iterator[SteeringProc]:
    control.appliances = [appliance(f"lon-{i}", "lon", f"http://127.0.3.{i}", lat=51.5,
                                    lon=-0.1) for i in range(1, 41)]
    sp = start_steering(control.url, "--answers", "40")
    yield sp
    stop_steering(sp)


def test_too_big_for_udp_sets_tc_and_tcp_gives_all(big: SteeringProc) -> None:
    out = dig("dig", big, "edge.cdn.example", "+noedns", "+ignore")
    assert " tc" in out and not answers(out)
    assert len(answers(dig("dig", big, "edge.cdn.example", "+noedns"))) == 40  # TCP retry
    assert len(answers(dig("kdig", big, "edge.cdn.example", "+tcp"))) == 40
    out = dig("kdig", big, "edge.cdn.example", "+noedns", "+ignore")
    assert " tc" in out.lower() and not answers(out)
    m = dns.query.tcp(dns.message.make_query(EDGE, "A"), "127.0.0.1", port=big.dns_port,
                      timeout=2)
    assert len(addrs(m)) == 40 and not m.flags & dns.flags.TC


def test_junk_gets_formerr_over_udp(shared: SteeringProc) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage",
                 ("127.0.0.1", shared.dns_port))
        data, _ = s.recvfrom(4096)
    assert data[:2] == b"\xab\xcd" and data[2] & 0x80 and data[3] & 0x0F == 1


def test_stale_appliance_leaves_answers_within_two_heartbeat_intervals(
    control: FakeControl,
) -> None:
    control.heartbeat_interval = 1.0
    sp = start_steering(control.url, "--poll-interval", "5")  # capped at heartbeat / 2
    try:
        assert sorted(addrs(query(sp, ecs="81.2.69.0/24"))) == ["127.0.1.1", "127.0.1.2"]
        for a in control.appliances:
            if a["id"] == "isp-a":
                a["state"] = "stale"
        t0 = time.monotonic()
        assert wait_for(lambda: "127.0.1.1" not in addrs(query(sp, ecs="81.2.69.0/24")), 3)
        assert time.monotonic() - t0 < 2 * control.heartbeat_interval
        assert "127.0.1.2" in addrs(query(sp, ecs="81.2.69.0/24"))
    finally:
        stop_steering(sp)


def test_control_outage_keeps_the_last_view_and_says_so(control: FakeControl,
                                                        steering: SteeringProc) -> None:
    before = addrs(query(steering, ecs="81.2.69.0/24"))
    control.fail = True
    assert wait_for(lambda: steering.healthz()["view"]["stale"], 5)
    h = steering.healthz()
    assert h["status"] == "degraded" and "500" in h["control_error"]
    assert addrs(query(steering, ecs="81.2.69.0/24")) == before
    control.fail = False
    assert wait_for(lambda: not steering.healthz()["view"]["stale"], 5)


def test_sigterm_stops_cleanly(control: FakeControl) -> None:
    sp = start_steering(control.url)
    assert stop_steering(sp) == 0


def _mutations(rng: random.Random, seeds: list[bytes]) -> Iterator[bytes]:
    for i in range(3000):
        kind = i % 4
        if kind == 0:
            yield rng.randbytes(rng.randrange(0, 300))
        base = bytearray(rng.choice(seeds))
        if kind == 1:  # flip a few bytes
            for _ in range(rng.randrange(1, 6)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            yield bytes(base)
        elif kind == 2:  # truncate
            yield bytes(base[: rng.randrange(len(base))])
        else:  # extend or splice
            yield bytes(base) + rng.randbytes(rng.randrange(1, 40))


def test_fuzz_thousands_of_packets_then_still_answers(shared: SteeringProc) -> None:
    """3000 random and mutated packets (bounded in count and time); the server must keep
    answering correctly afterwards."""
    rng = random.Random(7)
    seeds = [
        dns.message.make_query(EDGE, "A", use_edns=0,
                               options=[dns.edns.ECSOption.from_text("81.2.69.0/24")]).to_wire(),
        dns.message.make_query(EDGE, "AAAA").to_wire(),
        dns.message.make_query("cdn.example.", "ANY", use_edns=0).to_wire(),
        dns.message.make_query("x.example.org.", "TXT").to_wire(),
    ]
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for n, packet in enumerate(_mutations(rng, seeds)):
            s.sendto(packet, ("127.0.0.1", shared.dns_port))
            if n % 50 == 0:
                time.sleep(0.005)  # do not overrun the socket buffer: we fuzz the parser
                try:
                    while True:
                        s.recv(65535)
                except BlockingIOError:
                    pass
            assert time.monotonic() < deadline
    # TCP too: a few broken length-prefixed streams.
    for packet in list(_mutations(rng, seeds))[:50]:
        with socket.create_connection(("127.0.0.1", shared.dns_port), timeout=2) as c:
            c.sendall(len(packet).to_bytes(2, "big") + packet[: rng.randrange(len(packet) + 1)])
    assert shared.proc.poll() is None
    m = query(shared, ecs="81.2.69.0/24")
    assert m.rcode() == dns.rcode.NOERROR and sorted(addrs(m)) == ["127.0.1.1", "127.0.1.2"]
    assert shared.healthz()["status"] == "ok"
