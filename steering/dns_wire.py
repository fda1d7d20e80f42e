"""The DNS query hot path, parsed by hand from the wire: pure, no I/O.

dnspython spends tens of microseconds turning a query with an OPT record into objects;
the fields that decide an answer (question, EDNS payload size, EDNS Client Subnet) can be
read in a few. `parse` accepts only the common, well-formed shape (RFC 1035 §4.1 header
with one question, at most one additional record that is an EDNS0 OPT, RFC 6891) and
returns None for anything else, so that the caller hands it to dnspython, which handles
(and rejects) the unusual with care.
"""

from __future__ import annotations

from typing import Final, NamedTuple

HEADER_LEN: Final = 12
MAX_QUERY: Final = 4096  # a larger "query" is junk or an attack; dnspython gets to reject it
TYPE_OPT: Final = 41
OPTION_ECS: Final = 8  # RFC 7871 §6
OPTION_NSID: Final = 3  # RFC 5001: answered on the careful path
FAMILY_BITS: Final = {1: 32, 2: 128}
_COUNTS_NO_ADDITIONAL: Final = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_ONE_ADDITIONAL: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_ROOT: Final = b"\x00\x00\x29"  # root owner name, TYPE 41 (OPT)


class Query(NamedTuple):
    question: bytes  # qname + qtype + qclass exactly as sent (case kept for the echo)
    qtype: int
    qclass: int
    edns: bool
    payload: int  # the requester's UDP payload size (RFC 6891 §6.2.3), 512 without EDNS
    ecs: bytes | None  # ECS option data: family, source, scope, address (validated)


def parse(q: bytes) -> Query | None:
    """The fields of a plain query, or None when the query needs the careful path."""
    n = len(q)
    # Byte 2: QR, opcode (4 bits), AA, TC, RD. Only a standard query (QR=0, opcode 0).
    if n < HEADER_LEN + 5 or n > MAX_QUERY or q[2] & 0xFE:
        return None
    counts = q[4:12]
    if counts == _COUNTS_ONE_ADDITIONAL:
        edns = True
    elif counts == _COUNTS_NO_ADDITIONAL:
        edns = False
    else:
        return None
    try:
        i = HEADER_LEN
        length = q[i]
        while length:
            if length > 63:  # a compression pointer or reserved label type: careful path
                return None
            i += length + 1
            length = q[i]
        end = i + 5
        if end > n:
            return None
        question = q[HEADER_LEN:end]
        qtype = (q[i + 1] << 8) | q[i + 2]
        qclass = (q[i + 3] << 8) | q[i + 4]
        if not edns:
            return Query(question, qtype, qclass, False, 512, None) if end == n else None
        # OPT RR (RFC 6891 §6.1.2): root name, TYPE 41, CLASS = payload, TTL = ext-rcode,
        # version, DO+Z; then RDLEN and the options. Version 0 only (else BADVERS, later).
        if q[end : end + 3] != _OPT_ROOT or q[end + 6]:
            return None
        payload = (q[end + 3] << 8) | q[end + 4]
        j = end + 11
        if j + ((q[end + 9] << 8) | q[end + 10]) != n:
            return None
        ecs: bytes | None = None
        while j < n:
            olen = (q[j + 2] << 8) | q[j + 3]
            k = j + 4 + olen
            if k > n:
                return None
            if q[j] == 0 and q[j + 1] == OPTION_NSID:
                return None
            if q[j] == 0 and q[j + 1] == OPTION_ECS:
                if ecs is not None:
                    return None
                ecs = q[j + 4 : k]
                if not valid_ecs(ecs):
                    return None
            j = k
    except IndexError:  # the message ended inside a field
        return None
    return Query(question, qtype, qclass, True, payload if payload > 512 else 512, ecs)


def valid_ecs(data: bytes) -> bool:
    """RFC 7871 §6: known family, source within it, scope 0 in a query, address exactly
    ceil(source/8) bytes with the bits past the source prefix zero."""
    if len(data) < 4:
        return False
    family = (data[0] << 8) | data[1]
    source, scope = data[2], data[3]
    bits = FAMILY_BITS.get(family)
    if bits is None or source > bits or scope != 0:
        return False
    addr = data[4:]
    if len(addr) != (source + 7) // 8:
        return False
    if source % 8 and addr[-1] & (0xFF >> (source % 8)):
        return False
    return True


def ecs_network(data: bytes) -> tuple[int, int, int]:
    """(IP version, address as int, source prefix length) of a valid ECS option."""
    family = (data[0] << 8) | data[1]
    bits = FAMILY_BITS[family]
    raw = data[4:]
    addr = int.from_bytes(raw + bytes(bits // 8 - len(raw)), "big")
    return (4 if family == 1 else 6), addr, data[2]


def qname_labels(question: bytes) -> list[bytes]:
    """The labels of the question's name, lower-cased (question from a parsed Query)."""
    labels: list[bytes] = []
    i = 0
    while question[i]:
        length = question[i]
        labels.append(question[i + 1 : i + 1 + length].lower())
        i += length + 1
    return labels


def build_response(
    query_head: bytes,
    question: bytes,
    *,
    rcode: int = 0,
    aa: bool = True,
    tc: bool = False,
    answers: tuple[tuple[int, int, bytes], ...] = (),
    edns_payload: int | None = None,
    ecs: bytes | None = None,
) -> bytes:
    """A response to a parsed query: `query_head` is the query's first 3 bytes (ID and the
    flags byte holding RD); answers are (type, ttl, rdata) owned by the question's name,
    which they reference with a compression pointer (RFC 1035 §4.1.4) to offset 12."""
    flags = 0x80 | (query_head[2] & 0x01) | (0x04 if aa else 0) | (0x02 if tc else 0)
    parts = [query_head[:2], bytes([flags, rcode & 0x0F]),
             b"\x00\x01", len(answers).to_bytes(2, "big"), b"\x00\x00",
             b"\x00\x01" if edns_payload is not None else b"\x00\x00", question]
    for rtype, ttl, rdata in answers:
        parts.append(b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01" +
                     ttl.to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata)
    if edns_payload is not None:
        options = b""
        if ecs is not None:
            options = OPTION_ECS.to_bytes(2, "big") + len(ecs).to_bytes(2, "big") + ecs
        parts.append(b"\x00\x00\x29" + edns_payload.to_bytes(2, "big") + b"\x00\x00\x00\x00" +
                     len(options).to_bytes(2, "big") + options)
    return b"".join(parts)
