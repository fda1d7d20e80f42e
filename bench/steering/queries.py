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
