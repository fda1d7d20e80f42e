"""A deliberately narrow HTTP/1.1 request-head parser for the hit fast path, pure.

It accepts only what a player's plain GET or HEAD looks like and returns None for
everything else, so the caller hands the connection to aiohttp's full parser, which then
accepts or rejects the request with the right status. Being narrower than RFC 9112 is the
point: there is nothing this parser accepts that the full parser would refuse.

Refused here (None): other methods or versions, a request line that is not exactly three
parts, absolute-form targets, bytes outside visible ASCII in the target, obs-fold,
control characters in values, field names that are not tokens, any body framing
(Transfer-Encoding, a non-zero Content-Length), Expect, Upgrade, repeated fields whose
meaning would change when combined, and heads larger or with more fields than the limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET: Final = re.compile(rb"^/[\x21-\x7e]*$")
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: Fields that must appear at most once for us to read them without combining rules.
_SINGLE: Final = frozenset(
    {
        b"host",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"cache-control",
        b"connection",
        b"content-length",
        b"pragma",
    }
)
_REFUSE: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
MAX_FIELDS: Final = 100


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    #: The raw target as sent (still percent-encoded), query included.
    target: str
    #: Canonical-case names (``If-None-Match``), as the planner looks them up (or
    #: aiohttp's case-insensitive headers, for a request it parsed).
    headers: Mapping[str, str]
    keep_alive: bool


def parse_head(data: bytes, max_bytes: int) -> Head | None:
    """`data` is one request head without its final CRLF CRLF; None means "not ours"."""
    if len(data) > max_bytes:
        return None
    lines = data.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] not in (b"GET", b"HEAD"):
        return None
    if not _TARGET.match(parts[1]) or len(lines) - 1 > MAX_FIELDS:
        return None
    headers: dict[str, str] = {}
    seen: set[bytes] = set()
    keep_alive = True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            return None  # also catches obs-fold (a line starting with whitespace)
        lower = name.lower()
        if lower in _REFUSE:
            return None
        if lower in _SINGLE:
            if lower in seen:
                return None
            seen.add(lower)
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            return None
        if lower == b"content-length" and value != b"0":
            return None
        text = value.decode("latin-1")
        if lower == b"connection":
            tokens = {t.strip().lower() for t in text.split(",")}
            if "close" in tokens:
                keep_alive = False
            elif tokens - {"keep-alive", ""}:
                return None  # hop-by-hop fields named in Connection: let aiohttp handle it
        canonical = "-".join(p.capitalize() for p in name.decode("ascii").split("-"))
        headers[canonical] = f"{headers[canonical]}, {text}" if canonical in headers else text
    if b"host" not in seen:
        return None  # RFC 9112 §3.2: a 1.1 request without Host gets 400, from aiohttp
    return Head(parts[0].decode("ascii"), parts[1].decode("ascii"), headers, keep_alive)
