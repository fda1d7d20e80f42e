"""A deliberately narrow HTTP/1.1 request-head parser for the hit fast path, pure.

It accepts only what a player's plain GET or HEAD looks like and returns None for
everything else, so the caller hands the connection to aiohttp's full parser, which then
accepts or rejects the request with the right status. Being narrower than RFC 9112 is the
point: there is nothing this parser accepts that the full parser would refuse.

Refused here (None): other methods or versions, a request line that is not exactly three
parts, absolute-form targets, bytes outside visible ASCII in the target, obs-fold,
control characters anywhere (a bare CR or LF included), field names that are not
tokens, any body framing (Transfer-Encoding, a non-zero Content-Length), Expect, Upgrade,
repeated fields whose meaning would change when combined, and heads larger or with more
fields than the limits.

Per request it costs a dictionary lookup when the same head bytes came before (keep-alive
polling), a look at the request line and a lookup when only the fields came before (the
same player asking for another URL, or with a new token), and otherwise one pass over
the head with field names canonicalised once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, NamedTuple

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET: Final = re.compile(rb"/[\x21-\x7e]*")
#: Control characters other than HTAB, CR and LF, anywhere in the head; bare CR or LF
#: (one not in a CRLF) are caught by counting.
_BAD_BYTES: Final = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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
#: Field names as sent → (lowercase, canonical case), for the names clients use.
_NAMES: dict[bytes, tuple[bytes, str]] = {}
_NAMES_MAX: Final = 512
#: Request heads parsed before (bounded; cleared when full) and the largest one kept.
_HEADS: dict[bytes, Head] = {}
_HEADS_MAX: Final = 4096
_KEEP_HEAD_MAX: Final = 2048
#: The same for the field lines alone, (headers, keep-alive) or None (not ours): a player
#: sends the same fields with every URL, and every URL with a new token is a new head.
_FIELDS: dict[bytes, tuple[Mapping[str, str], bool] | None] = {}
_UNSEEN: Final[tuple[Mapping[str, str], bool]] = ({}, False)  # no value of _FIELDS


class Head(NamedTuple):
    """One request head (a tuple: one is made for every URL not seen before, at half the
    cost of a frozen dataclass)."""

    method: str
    #: The raw target as sent (still percent-encoded), query included.
    target: str
    #: Canonical-case names (``If-None-Match``), as the planner looks them up (or
    #: aiohttp's case-insensitive headers, for a request it parsed).
    headers: Mapping[str, str]
    keep_alive: bool


def parse_head(data: bytes, max_bytes: int) -> Head | None:
    """`data` is one request head without its final CRLF CRLF; None means "not ours".

    A head seen before (a player polling its playlist on a keep-alive connection sends
    the same bytes again) is answered from memory: parsing is pure, so the same bytes
    give the same `Head`, whose `headers` are shared and must not be changed."""
    if len(data) > max_bytes:
        return None
    head = _HEADS.get(data)
    if head is None:
        head = _parse(data)
        if head is not None and len(data) <= _KEEP_HEAD_MAX:
            if len(_HEADS) >= _HEADS_MAX:
                _HEADS.clear()
            _HEADS[data] = head
    return head


def _parse(data: bytes) -> Head | None:
    line, crlf, fields = data.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] not in (b"GET", b"HEAD"):
        return None
    # Past this, the request line is a method, two spaces, visible ASCII and the version:
    # no control byte, no CR or LF.
    if _TARGET.fullmatch(parts[1]) is None or not crlf:
        return None  # no fields: no Host
    known = _FIELDS.get(fields, _UNSEEN)
    if known is _UNSEEN:
        known = _fields(fields)
        if len(fields) <= _KEEP_HEAD_MAX:
            if len(_FIELDS) >= _HEADS_MAX:
                _FIELDS.clear()
            _FIELDS[fields] = known
    if known is None:
        return None
    return Head(parts[0].decode("ascii"), parts[1].decode("ascii"), known[0], known[1])


def _fields(data: bytes) -> tuple[Mapping[str, str], bool] | None:
    """(headers, keep-alive) of the field lines of a head, or None: not ours."""
    if _BAD_BYTES.search(data) is not None:
        return None
    lines = data.split(b"\r\n")
    crlfs = len(lines) - 1
    if data.count(b"\n") != crlfs or data.count(b"\r") != crlfs or len(lines) > MAX_FIELDS:
        return None  # a bare CR or LF, or too many fields
    headers: dict[str, str] = {}
    seen: set[bytes] = set()
    keep_alive = True
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        known = _NAMES.get(name)
        if known is None:
            known = _name(name)
            if known is None:
                return None  # not a token (also obs-fold: a line starting with whitespace)
        lower, canonical = known
        if lower in _SINGLE:
            if lower in seen:
                return None
            seen.add(lower)
            if lower == b"content-length" and value.strip(b" \t") != b"0":
                return None
        text = value.strip(b" \t").decode("latin-1")
        if lower == b"connection":
            tokens = {t.strip().lower() for t in text.split(",")}
            if "close" in tokens:
                keep_alive = False
            elif tokens - {"keep-alive", ""}:
                return None  # hop-by-hop fields named in Connection: let aiohttp handle it
        headers[canonical] = f"{headers[canonical]}, {text}" if canonical in headers else text
    if b"host" not in seen:
        return None  # RFC 9112 §3.2: a 1.1 request without Host gets 400, from aiohttp
    return headers, keep_alive


def _name(name: bytes) -> tuple[bytes, str] | None:
    """(lowercase, canonical case) of a field name we read, remembered while there is
    room; None for a name that is no token or that we refuse (`_REFUSE`)."""
    if _TOKEN.fullmatch(name) is None:
        return None
    lower = name.lower()
    if lower in _REFUSE:
        return None
    known = (lower, "-".join(p.capitalize() for p in name.decode("ascii").split("-")))
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = known
    return known
