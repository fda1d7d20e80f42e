"""What to answer to a GET or HEAD of a stored representation, decided without any I/O.

`plan_response(method, headers, size=, etag=, last_modified=)` evaluates the request's
preconditions and Range in the order RFC 9110 §13.2.2 prescribes:

1. If-Match (strong comparison) fails            → 412
2. else If-Unmodified-Since, modified since       → 412
3. If-None-Match (weak comparison) matches        → 304 for GET/HEAD, 412 otherwise
4. else If-Modified-Since, not modified (GET/HEAD) → 304
5. If-Range (strong ETag, or a date exactly equal to Last-Modified) decides whether
   Range is honoured at all (§13.1.5); when it fails the answer is 200 with everything
6. Range (`vcdn.ranges.parse_range`): none or malformed → 200, one range → 206,
   several → 206 multipart/byteranges, none satisfiable → 416 ``bytes */size``

The resulting `Plan` holds the status, the header fields that describe the body
(Content-Length, Content-Range, Content-Type, ETag, Last-Modified, Accept-Ranges) and the
byte spans to send in order. The adapter (`vcdn.httpserve.send`) adds transport-level
fields (Date, Cache-Control, CORS) and pushes the spans with sendfile.

HEAD is planned exactly like GET, Range included (RFC 9110 §9.3.2: the same header fields
as GET), and the adapter sends no body; this is also what nginx does.

`headers` may be aiohttp's case-insensitive `CIMultiDictProxy` or a plain dict keyed by
canonical (``If-None-Match``) or lower-case names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol

from vcdn.errors import BadRange
from vcdn.httpserve.multipart import MultipartLayout, MultipartTemplate
from vcdn.httpserve.validators import (
    STAR,
    ETag,
    format_http_date,
    parse_etag,
    parse_etag_list,
    parse_http_date,
    strong_match,
    weak_match,
)
from vcdn.ranges import ByteRange, parse_range

SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
DEFAULT_TYPE: Final = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Plan:
    """The decided response: status, body-describing headers and spans to send.

    `spans` are the representation's byte ranges to send in order (empty when there is no
    body); with `multipart` set, each span is preceded by its part header and the body
    ends with the layout's trailer. `content_length` is the exact body length on the wire.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    spans: tuple[ByteRange, ...] = ()
    multipart: MultipartLayout | None = None
    content_length: int = 0
    head: bool = False

    @property
    def has_body(self) -> bool:
        """True when the adapter must send body bytes (not HEAD, not 304/412/416)."""
        return not self.head and self.content_length > 0

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and type(headers) is dict:  # case-insensitive mappings found it already
        value = headers.get(name.lower())
    return value


_parse_etag = lru_cache(maxsize=4096)(parse_etag)


@lru_cache(maxsize=1024)
def _last_modified_text(seconds: int) -> str:
    return format_http_date(seconds)


def _matches(header: str, ours: ETag | None, *, weak: bool) -> bool:
    tags = parse_etag_list(header)
    if tags == STAR:
        return True  # the representation exists
    if ours is None or not isinstance(tags, tuple):
        return False
    compare = weak_match if weak else strong_match
    return any(compare(tag, ours) for tag in tags)


def _if_range_holds(value: str, ours: ETag | None, last_modified: int | None) -> bool:
    value = value.strip()
    if value.startswith(('"', "W/")):
        tag = parse_etag(value)
        return tag is not None and ours is not None and strong_match(tag, ours)
    date = parse_http_date(value)
    # §13.1.5: a date validator holds only when it exactly equals Last-Modified.
    return date is not None and last_modified is not None and date == last_modified


def validator_fields(
    etag: str | None, last_modified: float | None
) -> tuple[tuple[str, str], ...]:
    """The fields every planned answer of a representation starts with (Accept-Ranges,
    ETag, Last-Modified), in the order the head carries them."""
    fields: tuple[tuple[str, str], ...] = (("Accept-Ranges", "bytes"),)
    if etag:
        fields += (("ETag", etag),)
    if last_modified is not None:
        fields += (("Last-Modified", _last_modified_text(int(last_modified))),)
    return fields


def multipart_plan(
    validators: tuple[tuple[str, str], ...], layout: MultipartLayout, *, head: bool
) -> Plan:
    """The 206 multipart/byteranges plan of `layout` (RFC 9110 §14.6): its Content-Type
    names the boundary and its Content-Length is the framed body's exact length."""
    return Plan(
        206,
        (
            *validators,
            ("Content-Type", layout.content_type),
            ("Content-Length", str(layout.content_length)),
        ),
        tuple(part.range for part in layout.parts),
        multipart=layout,
        content_length=layout.content_length,
        head=head,
    )


class Stored(Protocol):
    """What the planner reads of a stored representation (an edge `Entry`, an origin
    `HotEntry`): its size, validators and type."""

    @property
    def size(self) -> int: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def last_modified(self) -> float | None: ...
    @property
    def content_type(self) -> str: ...


def plan_stored(
    method: str,
    headers: Mapping[str, str],
    stored: Stored,
    size: int | None = None,
    *,
    boundary: str | None = None,
) -> Plan:
    """`plan_response` for a stored representation (`size` overrides its own: a fill
    whose length became known; `boundary` is its version's multipart boundary)."""
    return plan_response(
        method,
        headers,
        size=stored.size if size is None else size,
        etag=stored.etag,
        last_modified=stored.last_modified,
        content_type=stored.content_type,
        boundary=boundary,
    )


def plan_response(
    method: str,
    headers: Mapping[str, str],
    *,
    size: int,
    etag: str | None,
    last_modified: float | None,
    content_type: str = DEFAULT_TYPE,
    boundary: str | None = None,
) -> Plan:
    """Decide the answer to `method` on a `size`-byte representation (see module doc).

    `etag` is the field value as sent (``'"abc"'``); `last_modified` POSIX seconds.
    `boundary` fixes the multipart boundary (tests); by default a random one is drawn.
    """
    method = method.upper()
    ours = _parse_etag(etag) if etag else None
    lm = int(last_modified) if last_modified is not None else None
    validators = validator_fields(etag, lm)
    head = method == "HEAD"

    def refuse(status: int) -> Plan:
        extra = [] if status == 304 else [("Content-Length", "0")]
        return Plan(status, (*validators, *extra), head=head)

    # §13.2.2 steps 1-2
    if_match = _get(headers, "If-Match")
    if if_match is not None:
        if not _matches(if_match, ours, weak=False):
            return refuse(412)
    elif lm is not None:
        ius = _get(headers, "If-Unmodified-Since")
        date = parse_http_date(ius) if ius is not None else None
        if date is not None and lm > date:
            return refuse(412)
    # steps 3-4
    if_none_match = _get(headers, "If-None-Match")
    if if_none_match is not None:
        if _matches(if_none_match, ours, weak=True):
            return refuse(304 if method in SAFE_METHODS else 412)
    elif lm is not None and method in SAFE_METHODS:
        ims = _get(headers, "If-Modified-Since")
        date = parse_http_date(ims) if ims is not None else None
        if date is not None and lm <= date:
            return refuse(304)
    # steps 5-6: Range is defined for GET only (§14.2); HEAD mirrors GET's header fields.
    range_header = _get(headers, "Range") if method in SAFE_METHODS else None
    if range_header is not None:
        if_range = _get(headers, "If-Range")
        if if_range is not None and not _if_range_holds(if_range, ours, lm):
            range_header = None
    try:
        ranges = parse_range(range_header, size)
    except BadRange:
        return Plan(
            416,
            (*validators, ("Content-Range", f"bytes */{size}"), ("Content-Length", "0")),
            head=head,
        )
    if ranges is None:
        spans = (ByteRange(0, size - 1),) if size > 0 else ()
        return Plan(
            200,
            (*validators, ("Content-Type", content_type), ("Content-Length", str(size))),
            spans,
            content_length=size,
            head=head,
        )
    if len(ranges) == 1:
        r = ranges[0]
        return Plan(
            206,
            (
                *validators,
                ("Content-Type", content_type),
                ("Content-Range", r.content_range(size)),
                ("Content-Length", str(r.length)),
            ),
            (r,),
            content_length=r.length,
            head=head,
        )
    layout = MultipartTemplate.of(size, content_type, boundary).layout(ranges)
    return multipart_plan(validators, layout, head=head)
