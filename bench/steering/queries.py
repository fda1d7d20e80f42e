"""The benchmark's query mix, written in dnsperf's binary input format (`-B`: each query
is a 2-byte length then the message), because dnsperf's text format cannot give each
query its own EDNS Client Subnet."""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

import dns.edns
import dns.message

# Client networks that exercise every mapping step: registered prefixes, the MaxMind test
# data's known networks (ASN and City), and unknown space (default site).
KNOWN = ["81.2.69.142", "89.160.20.112", "216.160.83.56", "2.125.160.216", "175.16.199.0",
         "67.43.156.0", "1.128.0.0", "12.81.92.0", "202.196.224.0"]


def client_subnets(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    nets: list[str] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # inside a registered ISP prefix (10.{site}.0.0/16 in the bench view)
            nets.append(f"10.{rng.randrange(20)}.{rng.randrange(256)}.0/24")
        elif kind == 1:
            base = ipaddress.ip_address(rng.choice(KNOWN))
            nets.append(f"{ipaddress.ip_network(f'{base}/24', strict=False)}")
        else:
            nets.append(f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24")
    return nets


def write(path: Path, zone: str, count: int = 20000, subnets: int = 2000,
          mixed_case: bool = False) -> int:
    """`mixed_case`: randomise the letter case of every query name, as resolvers using
    0x20 (draft-vixie-dnsext-dns0x20) do, so that no two queries repeat byte for byte."""
    nets = client_subnets(subnets)
    templates = []
    for net in nets:
        q = dns.message.make_query(f"edge.{zone}", "A", use_edns=0, want_dnssec=False,
                                   options=[dns.edns.ECSOption.from_text(net)])
        q.flags = 0  # an authoritative query: RD clear
        templates.append(q.to_wire())
    name_len = len(f"edge.{zone}") + 1
    rng = random.Random(2)
    with open(path, "wb") as fh:
        for _ in range(count):
            wire = rng.choice(templates)
            if mixed_case:
                name = bytes(b ^ 0x20 if 0x61 <= b <= 0x7A and rng.random() < 0.5 else b
                             for b in wire[12 : 12 + name_len])
                wire = wire[:12] + name + wire[12 + name_len :]
            fh.write(struct.pack("!H", len(wire)) + wire)
    return len(nets)


def _name_wire(name: str, rng: random.Random) -> bytes:
    """The query name in wire form with each letter's case drawn at random (0x20)."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = bytes(b ^ 0x20 if 0x61 <= b <= 0x7A and rng.random() < 0.5 else b
                    for b in label.lower().encode())
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def ecs_query(name: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network,
              rng: random.Random) -> bytes:
    """An A query (RD clear, EDNS0 payload 1232) carrying `net` as its ECS option, built by
    hand: dnspython needs ~30 µs a query, too slow for a million of them."""
    family = 1 if net.version == 4 else 2
    addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
    ecs = struct.pack("!HBB", family, net.prefixlen, 0) + addr
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!HHH", len(ecs) + 4, 8,
                                                               len(ecs)) + ecs
    head = struct.pack("!HHHHHH", rng.randrange(65536), 0, 1, 0, 0, 1)
    return head + _name_wire(name, rng) + b"\x00\x01\x00\x01" + opt


def uncached_subnets(n: int, seed: int = 3, v6_share: float = 0.2) -> list[
        ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`n` distinct client networks, /24 (IPv4) and /48 (IPv6), in random order: every
    registered bench prefix's /24s, the MaxMind test data's known networks, random rest."""
    rng = random.Random(seed)
    n6 = int(n * v6_share)
    v4: set[int] = {(10 << 16) | (s << 8) | x for s in range(20) for x in range(256)}
    v4 |= {int(ipaddress.ip_address(k)) >> 8 for k in KNOWN}
    while len(v4) < n - n6:
        v4.add(rng.randrange(1 << 16, 224 << 16))
    known6 = [0x2001_0218, 0x2001_0220, 0x2001_0230, 0x2A02_CF40, 0x2001_0480]
    v6: set[int] = {(k << 16) | x for k in known6 for x in range(64)}
    while len(v6) < n6:
        v6.add(rng.randrange(0x2000 << 32, 0x4000 << 32))  # 2000::/3, as /48s
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.IPv4Network((a << 8, 24)) for a in list(v4)[: n - n6]]
    nets += [ipaddress.IPv6Network((a << 80, 48)) for a in list(v6)[:n6]]
    rng.shuffle(nets)
    return nets


def write_uncached(path: Path, zone: str, nets: list[ipaddress.IPv4Network |
                   ipaddress.IPv6Network], seed: int = 4) -> None:
    """One query per network, every name 0x20-cased: no query repeats a client /24 (/48)
    nor its bytes, so nothing is answered from a cache."""
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        for net in nets:
            wire = ecs_query(f"edge.{zone}", net, rng)
            fh.write(struct.pack("!H", len(wire)) + wire)
