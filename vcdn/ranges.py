"""The HTTP Range header parser (RFC 9110 §14), pure: bytes of text in, decisions out.

`parse_range(header, size)` tells three outcomes apart:

* ``None``: no Range, a malformed one, or a unit we do not know. RFC 9110 §14.2 lets a
  server ignore such a header, so the caller answers 200 with the whole representation.
* a non-empty list of `ByteRange`: every satisfiable range, inclusive offsets inside
  ``[0, size)``; unsatisfiable specs in a multi-range set are dropped (§14.1.2).
* `BadRange` raised: the set is well-formed but no range is satisfiable, so the caller
  answers 416 with ``Content-Range: bytes */size`` (§15.5.17).

Coalescing (§14.3 allows it): when any two selected ranges overlap or touch, the whole
set is sorted and merged, so a client never gets the same byte twice and a request of
thousands of overlapping ranges cannot multiply the response. Disjoint ranges keep the
order the client asked for, as §14.6 recommends for multipart responses.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final

from vcdn.errors import BadRange

#: More specs than this is a denial-of-service smell (RFC 9110 §14.2); we ignore the header.
MAX_RANGES: Final = 100
#: Digits beyond this cannot be a real offset; treating them as malformed avoids bignums.
_MAX_DIGITS: Final = 19
#: What players send: ``bytes=`` and up to `MAX_RANGES` ``first-last`` specs, ASCII digits,
#: no whitespace. One match decides such a set is well formed, so it is read without
#: splitting and checking spec by spec; anything else takes the general path.
_PLAIN_SET: Final = re.compile(
    rf"bytes=[0-9]{{1,19}}-[0-9]{{1,19}}(?:,[0-9]{{1,19}}-[0-9]{{1,19}}){{0,{MAX_RANGES - 1}}}"
)
_PLAIN_SPEC: Final = re.compile(r"([0-9]+)-([0-9]+)")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive byte offsets, as Content-Range writes them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def _digits(text: str) -> int | None:
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _spec(spec: str, size: int) -> ByteRange | bool | None:
    """One range-spec: a ByteRange, None when unsatisfiable, False when malformed."""
    first_text, dash, last_text = spec.partition("-")
    if not dash:
        return False
    first_text, last_text = first_text.strip(), last_text.strip()
    if not first_text:  # suffix-range: "-N"
        n = _digits(last_text)
        if n is None:
            return False
        if n == 0:
            return None  # §14.1.2: a zero suffix-length is unsatisfiable.
        # §14.1.2: a suffix longer than the representation selects all of it.
        return ByteRange(max(0, size - n), size - 1)
    first = _digits(first_text)
    if first is None:
        return False
    if not last_text:  # open-ended "N-"
        return ByteRange(first, size - 1) if first < size else None
    last = _digits(last_text)
    if last is None or last < first:
        return False  # §14.1.1: last-pos < first-pos makes the whole header invalid.
    if first >= size:
        return None
    return ByteRange(first, min(last, size - 1))


def parse_range(header: str | None, size: int) -> list[ByteRange] | None:
    """Parse a Range header against a representation of `size` bytes (see module doc)."""
    if header is None or size <= 0:
        return None
    if _PLAIN_SET.fullmatch(header):
        selected: list[ByteRange] = []
        for first_text, last_text in _PLAIN_SPEC.findall(header, 6):
            first, last = int(first_text), int(last_text)
            if last < first:
                return None  # §14.1.1: the whole header is invalid
            if first < size:
                selected.append(ByteRange(first, last if last < size else size - 1))
    else:
        parsed = _parse_general(header, size)
        if parsed is None:
            return None
        selected = parsed
    if not selected:
        raise BadRange(f"Range {header!r} selects nothing of {size} bytes.", size=size)
    return coalesce(selected)


def _parse_general(header: str, size: int) -> list[ByteRange] | None:
    """Every satisfiable spec of any well-formed set (OWS, empty elements, suffix and
    open-ended specs, any case of the unit); None when malformed or not bytes."""
    unit, eq, range_set = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    specs = [s for s in (p.strip() for p in range_set.split(",")) if s]
    if not specs or len(specs) > MAX_RANGES:
        return None
    selected: list[ByteRange] = []
    for spec in specs:
        result = _spec(spec, size)
        if result is False:
            return None
        if isinstance(result, ByteRange):
            selected.append(result)
    return selected


def coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge ranges when any overlap or touch; otherwise keep the client's order."""
    if len(ranges) < 3:  # one, or the usual two: a comparison, no sort
        if len(ranges) < 2:
            return ranges
        a, b = ranges
        if a.last + 1 < b.first or b.last + 1 < a.first:
            return ranges
    ordered = sorted(ranges, key=lambda r: r.first)
    if all(a.last + 1 < b.first for a, b in itertools.pairwise(ordered)):
        return ranges
    merged = [ordered[0]]
    for r in ordered[1:]:
        top = merged[-1]
        if r.first <= top.last + 1:
            merged[-1] = ByteRange(top.first, max(top.last, r.last))
        else:
            merged.append(r)
    return merged


def parse_content_range(header: str | None) -> tuple[int, int, int | None] | None:
    """`bytes 0-99/1234` → (0, 99, 1234); `bytes 0-99/*` → (0, 99, None); else None.

    Used by the edge when an upstream answers a range request.
    """
    if not header:
        return None
    unit, _, rest = header.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    span, slash, total_text = rest.strip().partition("/")
    first_text, dash, last_text = span.partition("-")
    if not slash or not dash:
        return None
    first, last = _digits(first_text), _digits(last_text)
    total = None if total_text == "*" else _digits(total_text)
    if first is None or last is None or last < first or (total_text != "*" and total is None):
        return None
    if total is not None and last >= total:
        return None
    return first, last, total
