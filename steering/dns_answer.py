"""Authoritative answers for the steering zone: query bytes in, response bytes out, pure.

Two paths. The hot path (`dns_wire.parse` + a dict) answers from a cache of encoded
responses keyed by (question, client subnet): only the 2 ID bytes, the RD bit and the
question's letter case (resolvers randomise it, draft-vixie-dnsext-dns0x20) are spliced
in per query. In front of it, a query repeated byte for byte after its ID by the same
requester is answered from a second dict without parsing at all. A miss, or any query
the hand parser declines, goes through dnspython (or, for the common steered A/AAAA
miss, a hand-built answer); both caches are dropped whenever the appliance view changes.

Behaviour (RFC 1035, 2308, 6891, 7871, 8482): AA set and RA clear; REFUSED outside the
zone (never an open resolver); NXDOMAIN or NODATA with the SOA in the authority section;
FORMERR for junk that still has a header, silence for what has not; NOTIMP for opcodes
other than QUERY; BADVERS for EDNS versions other than 0; TC=1 and no answers when the
response exceeds the requester's UDP size; ECS echoed with the scope the answer depended on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from steering import dns_wire
from steering.select import Client, Decision

if TYPE_CHECKING:
    from steering.compiled import CompiledMap

TCP: Final = 65535  # the largest DNS message (RFC 1035 §4.2.2 length prefix)
MAX_CACHE: Final = 200_000
_FLAG_TC: Final = 0x02  # in the third header byte
_ONE_ADDITIONAL: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD 1, AN 0, NS 0, AR 1
_SHORTEST_ECS: Final = 38  # header, root name, type, class, OPT with a 0-bit ECS

Decide = Callable[[Client], Decision]


@dataclass(frozen=True)
class ZoneConfig:
    origin: dns.name.Name
    service_names: frozenset[str] = frozenset({"edge"})
    ns_addresses: tuple[str, ...] = ()
    ttl: int = 20
    negative_ttl: int = 30
    answers: int = 2
    udp_payload: int = 1232
    serial: int = 1
    # RFC 5001 name server identifier, sent to queries that ask for it: which worker
    # process answered (empty: none sent).
    nsid: bytes = b""

    @classmethod
    def make(cls, zone: str, **kw: object) -> ZoneConfig:
        return cls(origin=dns.name.from_text(zone.lower()), **kw)  # type: ignore[arg-type]


class _Entry:
    """An encoded response split around the question, ready to splice."""

    __slots__ = ("heads", "size", "tail", "tc_heads", "tc_tail")

    def __init__(self, full: bytes, truncated: bytes, qlen: int) -> None:
        self.size = len(full)
        self.heads = (bytes([full[2] & 0xFE]) + full[3:12], bytes([full[2] | 1]) + full[3:12])
        self.tail = full[12 + qlen :]
        self.tc_heads = (bytes([truncated[2] & 0xFE]) + truncated[3:12],
                         bytes([truncated[2] | 1]) + truncated[3:12])
        self.tc_tail = truncated[12 + qlen :]


def _header_only(q: bytes, rcode: int) -> bytes | None:
    """A bare response (no sections) for a query too broken to echo; None if no header."""
    if len(q) < dns_wire.HEADER_LEN or q[2] & 0x80:
        return None  # no header, or a response: answering could start a loop
    flags2 = 0x80 | (q[2] & 0x79)  # QR, opcode and RD kept; AA, TC cleared
    return q[:2] + bytes([flags2, rcode & 0x0F]) + bytes(8)


def _client_of(ip: str) -> Client:
    a = ipaddress.ip_address(ip)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return Client.of(str(a))


class Responder:
    """Answers queries for one zone from the current decision function and its cache."""

    def __init__(self, zone: ZoneConfig, decide: Decide,
                 compiled: CompiledMap | None = None) -> None:
        self.zone = zone
        self._decide = decide
        self._compiled = compiled
        self.compiled_answers = 0
        self._cache: dict[tuple[object, ...], _Entry] = {}
        self._exact: dict[tuple[bytes, str], bytes] = {}
        self.hits = 0
        self.misses = 0
        o = zone.origin
        self._ns_name = dns.name.from_text("ns1", o)
        self._soa = dns.rrset.from_text(
            o, zone.negative_ttl, "IN", "SOA",
            f"{self._ns_name} {dns.name.from_text('hostmaster', o)} "
            f"{zone.serial} 3600 600 86400 {zone.negative_ttl}",
        )
        self._ns = dns.rrset.from_text(o, 3600, "IN", "NS", str(self._ns_name))
        self._service_wire = frozenset(
            dns.name.from_text(n, o).to_wire().lower() for n in zone.service_names
        )
        by_len: dict[int, set[bytes]] = {}
        for w in self._service_wire:
            by_len.setdefault(len(w), set()).add(w)
        self._service_by_len = tuple((n, frozenset(ws)) for n, ws in sorted(by_len.items()))

    def set_decide(self, decide: Decide, compiled: CompiledMap | None = None) -> None:
        """Swap the decision function (a new view) and its compiled tables, and drop every
        cached response."""
        self._decide = decide
        self._compiled = compiled
        self._cache = {}
        self._exact = {}

    @property
    def cached(self) -> int:
        return len(self._cache)

    # --- the hot path ---

    def answer(self, q: bytes, ip: str, tcp: bool = False) -> bytes | None:
        """The response to `q` from the requester at `ip`. None means: send nothing.

        Answers keep their ranking order (no shuffling): the first address is the best."""
        if not tcp:
            # The steered query with ECS in its plain shape, matched by its bytes: the
            # compiled answer without `parse` (the same call that `parse` leads to below).
            compiled = self._compiled
            steered = 0  # the length of the service name the query starts with, if any
            keep = True  # whether the exact-bytes dict may hold it
            if (compiled is not None and len(q) > _SHORTEST_ECS and not q[2] & 0xFE
                    and q[4:12] == _ONE_ADDITIONAL):
                for n, names in self._service_by_len:
                    name = q[12 : 12 + n]
                    lowered = name.lower()
                    if lowered in names:
                        steered = n
                        # A name as registered (lower case) may repeat byte for byte; a
                        # 0x20-cased one would not, so no path keeps it (their questions
                        # differ from their lower case) and it need not be looked up.
                        keep = name == lowered
                        break
            if keep:
                # Repeat of a query seen byte for byte (after the ID) from this requester:
                # the response is a pure function of those bytes, the requester and the
                # view.
                done = self._exact.get((q[2:], ip))
                if done is not None:
                    self.hits += 1
                    return q[:2] + done
            if steered:
                resp = compiled.answer_udp(q, steered)  # type: ignore[union-attr]
                if resp is not None:
                    self.compiled_answers += 1
                    if keep:
                        if len(self._exact) >= MAX_CACHE:
                            self._exact = {}
                        self._exact[(q[2:], ip)] = resp[2:]
                    return resp
        p = dns_wire.parse(q)
        if p is None:
            return self._careful(q, ip, tcp)
        question, qtype, qclass, edns, payload, ecs = p
        lowered = question.lower()
        compiled = self._compiled
        if (compiled is not None and ecs is not None and qclass == 1 and qtype in (1, 28)
                and lowered[:-4] in self._service_wire):
            # The compiled mapping: one bisection, a few hashes, prebuilt bytes.
            rest = compiled.answer(q, question, qtype, ecs, TCP if tcp else payload)
            if rest is not None:
                self.compiled_answers += 1
                if question == lowered and not tcp:
                    if len(self._exact) >= MAX_CACHE:
                        self._exact = {}
                    self._exact[(q[2:], ip)] = rest
                return q[:2] + rest
        if ecs is None or ecs[2] == 0:
            key: tuple[object, ...] = (lowered, edns, ecs, ip)
        else:
            key = (lowered, ecs)
        entry = self._cache.get(key)
        if entry is None:
            self.misses += 1
            entry = self._fill_steered(q, p, ip, key) or self._fill(q, ip, key, len(question))
            if entry is None:
                return self._careful(q, ip, tcp)
        else:
            self.hits += 1
        rd = q[2] & 1
        if tcp:
            return q[:2] + entry.heads[rd] + question + entry.tail
        # RFC 6891 §6.2.5: over UDP, never exceed the requester's payload size (512 without
        # EDNS); over TCP the full answer fits.
        if entry.size > payload:
            rest = entry.tc_heads[rd] + question + entry.tc_tail
        else:
            rest = entry.heads[rd] + question + entry.tail
        if question == lowered:  # a 0x20-randomised name would never repeat: do not keep it
            if len(self._exact) >= MAX_CACHE:
                self._exact = {}
            self._exact[(q[2:], ip)] = rest
        return q[:2] + rest

    def _fill_steered(self, q: bytes, p: dns_wire.Query, ip: str,
                      key: tuple[object, ...]) -> _Entry | None:
        """Build a steered A/AAAA answer by hand (the common miss); None for anything else."""
        if p.qclass != 1 or p.qtype not in (1, 28):
            return None
        if p.question[:-4].lower() not in self._service_wire:
            return None
        if p.ecs is not None and p.ecs[2]:
            version, addr, source = dns_wire.ecs_network(p.ecs)
            client = Client(version, addr, source)
        else:
            client = _client_of(ip)
        decision = self._decide(client)
        family, rtype = (socket.AF_INET, 1) if p.qtype == 1 else (socket.AF_INET6, 28)
        chosen: list[str] = []
        for node in decision.nodes:
            for a in node.addrs4[:1] if rtype == 1 else node.addrs6[:1]:
                if a not in chosen:
                    chosen.append(a)
            if len(chosen) >= self.zone.answers:
                break
        if not chosen:
            return None  # NODATA: the careful path adds the SOA
        answers = tuple((rtype, self.zone.ttl, socket.inet_pton(family, a)) for a in chosen)
        echo = None
        if p.ecs is not None:
            scope = decision.scope if p.ecs[2] else 0
            echo = p.ecs[:3] + bytes([scope]) + p.ecs[4:]  # RFC 7871 §7.2.1
        payload = self.zone.udp_payload if p.edns else None
        head = q[:3]
        full = dns_wire.build_response(head, p.question, answers=answers,
                                       edns_payload=payload, ecs=echo)
        small = dns_wire.build_response(head, p.question, tc=True, edns_payload=payload,
                                        ecs=echo)
        return self._store(key, _Entry(full, small, len(p.question)))

    def _store(self, key: tuple[object, ...], entry: _Entry) -> _Entry:
        if len(self._cache) >= MAX_CACHE:
            self._cache = {}
        self._cache[key] = entry
        return entry

    def _fill(self, q: bytes, ip: str, key: tuple[object, ...], qlen: int) -> _Entry | None:
        try:
            msg = dns.message.from_wire(q)
        except Exception:
            return None
        resp = self._respond(msg, ip)
        full = resp.to_wire(max_size=TCP, want_shuffle=False)
        if len(full) < 12 + qlen:
            return None
        truncated = self._truncate(resp).to_wire()
        return self._store(key, _Entry(full, truncated, qlen))

    # --- the careful path (dnspython) ---

    def _careful(self, q: bytes, ip: str, tcp: bool) -> bytes | None:
        if len(q) < dns_wire.HEADER_LEN or q[2] & 0x80:
            return None
        opcode = (q[2] >> 3) & 0x0F
        if opcode != dns.opcode.QUERY:
            return _header_only(q, dns.rcode.NOTIMP)
        try:
            msg = dns.message.from_wire(q)
        except Exception:
            return _header_only(q, dns.rcode.FORMERR)
        if msg.edns > 0:
            resp = dns.message.make_response(msg, our_payload=self.zone.udp_payload)
            resp.use_edns(0, 0, self.zone.udp_payload)
            resp.set_rcode(dns.rcode.BADVERS)  # RFC 6891 §6.1.3
            return resp.to_wire()
        if len(msg.question) != 1 or msg.answer or msg.authority:
            return _header_only(q, dns.rcode.FORMERR)
        ecs = [o for o in msg.options if o.otype == dns.edns.OptionType.ECS]
        if len(ecs) > 1 or (ecs and not dns_wire.valid_ecs(ecs[0].to_wire())):
            return _header_only(q, dns.rcode.FORMERR)  # RFC 7871 §7.1.1
        resp = self._respond(msg, ip)
        size = max(512, msg.payload) if msg.edns >= 0 else 512
        wire = resp.to_wire(max_size=TCP, want_shuffle=False)
        if not tcp and len(wire) > size:
            wire = self._truncate(resp).to_wire()
        return wire

    def _truncate(self, resp: dns.message.Message) -> dns.message.Message:
        small = dns.message.Message(id=resp.id)
        small.flags = resp.flags | dns.flags.TC
        small.set_rcode(resp.rcode())
        small.question = list(resp.question)
        if resp.edns >= 0:
            small.use_edns(resp.edns, resp.ednsflags, resp.payload, options=list(resp.options))
        return small

    def _respond(self, msg: dns.message.Message, ip: str) -> dns.message.Message:
        z = self.zone
        resp = dns.message.make_response(msg, our_payload=z.udp_payload)
        resp.flags &= ~dns.flags.RA
        qrr = msg.question[0]
        name, rdtype, rdclass = qrr.name, qrr.rdtype, qrr.rdclass
        ecs_in = next((o for o in msg.options if o.otype == dns.edns.OptionType.ECS), None)
        scope = 0
        if rdclass != dns.rdataclass.IN or not name.is_subdomain(z.origin) or rdtype in (
            dns.rdatatype.AXFR, dns.rdatatype.IXFR,
        ):
            resp.set_rcode(dns.rcode.REFUSED)
            return self._with_ecs(resp, msg, ecs_in, 0)
        resp.flags |= dns.flags.AA
        rel = name.relativize(z.origin)
        label = rel.to_text().lower()
        if name == z.origin:
            rrsets = {dns.rdatatype.SOA: self._soa, dns.rdatatype.NS: self._ns}
        elif name == self._ns_name:
            rrsets = self._address_rrsets(name, z.ns_addresses, 3600)
        elif label in z.service_names:
            client = self._client(ecs_in, ip)
            decision = self._decide(client)
            scope = decision.scope if ecs_in is not None and ecs_in.srclen else 0
            rrsets = self._steered(name, decision)
        else:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            resp.authority.append(self._soa)
            return self._with_ecs(resp, msg, ecs_in, 0)
        if rdtype == dns.rdatatype.ANY:
            # RFC 8482 §4.1: answer ANY with one RRset of the name's choosing.
            for t in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SOA, dns.rdatatype.NS):
                if t in rrsets:
                    resp.answer.append(_renamed(rrsets[t], name))
                    break
            else:
                resp.answer.append(dns.rrset.from_text(name, z.ttl, "IN", "HINFO",
                                                       '"RFC8482" ""'))
        elif rdtype in rrsets:
            resp.answer.append(_renamed(rrsets[rdtype], name))
        else:
            resp.authority.append(self._soa)  # NODATA (RFC 2308 §2.2)
        return self._with_ecs(resp, msg, ecs_in, scope)

    def _steered(self, name: dns.name.Name, decision: Decision) -> dict[int, dns.rrset.RRset]:
        n = self.zone.answers
        v4: list[str] = []
        v6: list[str] = []
        for node in decision.nodes:
            if len(v4) < n:
                v4.extend(a for a in node.addrs4[:1] if a not in v4)
            if len(v6) < n:
                v6.extend(a for a in node.addrs6[:1] if a not in v6)
        out: dict[int, dns.rrset.RRset] = {}
        if v4:
            out[dns.rdatatype.A] = dns.rrset.from_text_list(name, self.zone.ttl, "IN", "A",
                                                            v4[:n])
        if v6:
            out[dns.rdatatype.AAAA] = dns.rrset.from_text_list(name, self.zone.ttl, "IN",
                                                               "AAAA", v6[:n])
        return out

    def _address_rrsets(self, name: dns.name.Name, addrs: Sequence[str],
                        ttl: int) -> dict[int, dns.rrset.RRset]:
        out: dict[int, dns.rrset.RRset] = {}
        v4 = [a for a in addrs if ":" not in a]
        v6 = [a for a in addrs if ":" in a]
        if v4:
            out[dns.rdatatype.A] = dns.rrset.from_text_list(name, ttl, "IN", "A", v4)
        if v6:
            out[dns.rdatatype.AAAA] = dns.rrset.from_text_list(name, ttl, "IN", "AAAA", v6)
        return out

    @staticmethod
    def _client(ecs: dns.edns.Option | None, ip: str) -> Client:
        if ecs is None:
            return _client_of(ip)
        version, addr, source = dns_wire.ecs_network(ecs.to_wire())
        if source == 0:
            return _client_of(ip)  # RFC 7871 §7.1.2: /0 asks us to use the resolver's address
        return Client(version, addr, source)

    def _with_ecs(self, resp: dns.message.Message, msg: dns.message.Message,
                  ecs: dns.edns.Option | None, scope: int) -> dns.message.Message:
        if msg.edns < 0:
            return resp
        options: list[dns.edns.Option] = []
        if ecs is not None:
            data = ecs.to_wire()
            # RFC 7871 §7.2.1: echo family, source prefix and address; set the scope.
            options.append(dns.edns.GenericOption(dns.edns.OptionType.ECS,
                                                  data[:3] + bytes([scope]) + data[4:]))
        if self.zone.nsid and any(o.otype == dns.edns.OptionType.NSID for o in msg.options):
            options.append(dns.edns.GenericOption(dns.edns.OptionType.NSID, self.zone.nsid))
        resp.use_edns(0, 0, self.zone.udp_payload, options=options)
        return resp


def _renamed(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
    """The RRset owned by the question's name as sent (keeps the requester's letter case)."""
    out = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype)
    out.update(rrset)
    out.ttl = rrset.ttl
    return out
