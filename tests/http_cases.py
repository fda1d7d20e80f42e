"""The table of range and conditional cases every vcdn HTTP server must pass.

Shared by the origin's and the edge's tests so both are held to the same behaviour
(RFC 9110 §13-§15). A case describes the request (header values may use the
placeholders ``{etag}``, ``{weak_etag}``, ``{lm}`` (the served Last-Modified),
``{before}``/``{after}`` (one day earlier/later), ``{size}``, ``{size2}``, ``{size5}``,
``{size_plus10}``, ``{size_plus20}``) and the expected answer as byte spans of the
resource. Usage with any client::

    res = Resource(data, etag=resp_etag, last_modified=resp_last_modified)
    for case in CASES:
        status, headers, body = fetch(case.method, url, case.request_headers(res))
        check(case, res, status, headers, body)   # AssertionError says what differs

`headers` given to `check` is a dict with lower-case names. The zero-length resource has
its own table, `EMPTY_CASES`.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from email.utils import formatdate

from tests import byteranges
from vcdn.httpserve.multipart import boundary_of

FULL = "full"


@dataclass(frozen=True)
class Resource:
    data: bytes
    etag: str
    last_modified: str

    def placeholders(self) -> dict[str, str]:
        lm = calendar.timegm(time.strptime(self.last_modified, "%a, %d %b %Y %H:%M:%S GMT"))
        n = len(self.data)
        return {
            "etag": self.etag,
            "weak_etag": "W/" + self.etag,
            "lm": self.last_modified,
            "before": formatdate(lm - 86400, usegmt=True),
            "after": formatdate(lm + 86400, usegmt=True),
            "size": str(n),
            "size2": str(2 * n),
            "size5": str(5 * n),
            "size_plus10": str(n + 10),
            "size_plus20": str(n + 20),
        }


@dataclass(frozen=True)
class Case:
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    #: FULL, or a list of (first, last) spans; negative numbers count from the end (-1 = last byte).
    body: str | list[tuple[int, int]] = FULL
    method: str = "GET"
    curl: bool = False  # part of the subset also run with curl

    def request_headers(self, res: Resource) -> dict[str, str]:
        values = res.placeholders()
        return {k: v.format(**values) for k, v in self.headers.items()}

    def spans(self, size: int) -> list[tuple[int, int]]:
        if self.body == FULL:
            return [(0, size - 1)] if size else []
        return [(a % size if a < 0 else a, b % size if b < 0 else b) for a, b in self.body]

    def __str__(self) -> str:
        return self.name


CASES: list[Case] = [
    Case("plain GET sends everything", curl=True),
    Case("HEAD sends headers only", method="HEAD", curl=True),
    Case("single range", {"Range": "bytes=0-99"}, 206, [(0, 99)], curl=True),
    Case("one-byte range", {"Range": "bytes=0-0"}, 206, [(0, 0)]),
    Case("open-ended range", {"Range": "bytes=100-"}, 206, [(100, -1)], curl=True),
    Case("suffix range", {"Range": "bytes=-100"}, 206, [(-100, -1)], curl=True),
    Case("suffix longer than the file selects all", {"Range": "bytes=-{size2}"}, 206, [(0, -1)]),
    Case("last-pos beyond the end is clipped", {"Range": "bytes=10-{size5}"}, 206, [(10, -1)]),
    Case(
        "several ranges → multipart/byteranges",
        {"Range": "bytes=0-9,20-29,-5"},
        206,
        [(0, 9), (20, 29), (-5, -1)],
        curl=True,
    ),
    Case("whitespace in a range set", {"Range": "bytes= 0-9 , 20-29"}, 206, [(0, 9), (20, 29)]),
    Case("overlapping ranges are coalesced", {"Range": "bytes=0-99,50-149"}, 206, [(0, 149)]),
    Case("adjacent ranges are coalesced", {"Range": "bytes=0-9,10-19"}, 206, [(0, 19)]),
    Case("range past the end → 416", {"Range": "bytes={size}-"}, 416, [], curl=True),
    Case(
        "only unsatisfiable ranges → 416",
        {"Range": "bytes={size}-,{size_plus10}-{size_plus20}"},
        416,
        [],
    ),
    Case("zero suffix → 416", {"Range": "bytes=-0"}, 416, []),
    Case("malformed range is ignored", {"Range": "bytes=abc"}, 200, curl=True),
    Case("reversed range is malformed and ignored", {"Range": "bytes=5-1"}, 200),
    Case("unknown range unit is ignored", {"Range": "items=0-1"}, 200),
    Case("If-Range with the current ETag honours Range",
         {"Range": "bytes=0-99", "If-Range": "{etag}"}, 206, [(0, 99)], curl=True),
    Case("If-Range with another ETag sends everything",
         {"Range": "bytes=0-99", "If-Range": '"not-it"'}, 200, curl=True),
    Case("If-Range with a weak ETag sends everything",
         {"Range": "bytes=0-99", "If-Range": "{weak_etag}"}, 200),
    Case("If-Range with the Last-Modified date honours Range",
         {"Range": "bytes=0-99", "If-Range": "{lm}"}, 206, [(0, 99)]),
    Case("If-Range with an older date sends everything",
         {"Range": "bytes=0-99", "If-Range": "{before}"}, 200),
    Case("If-None-Match with the ETag → 304", {"If-None-Match": "{etag}"}, 304, [], curl=True),
    Case("If-None-Match * → 304", {"If-None-Match": "*"}, 304, []),
    Case("If-None-Match list containing the ETag → 304",
         {"If-None-Match": '"a", {etag}, "b"'}, 304, []),
    Case("If-None-Match compares weakly", {"If-None-Match": "{weak_etag}"}, 304, []),
    Case("If-None-Match with another ETag → 200", {"If-None-Match": '"other"'}, 200),
    Case("HEAD with If-None-Match → 304", {"If-None-Match": "{etag}"}, 304, [], method="HEAD"),
    Case("If-Modified-Since the Last-Modified → 304",
         {"If-Modified-Since": "{lm}"}, 304, [], curl=True),
    Case("If-Modified-Since a later date → 304", {"If-Modified-Since": "{after}"}, 304, []),
    Case("If-Modified-Since an older date → 200", {"If-Modified-Since": "{before}"}, 200),
    Case("If-Modified-Since with an invalid date is ignored",
         {"If-Modified-Since": "yesterday"}, 200),
    Case("If-None-Match takes precedence over If-Modified-Since",
         {"If-None-Match": '"other"', "If-Modified-Since": "{after}"}, 200),
    Case("If-Match with another ETag → 412", {"If-Match": '"other"'}, 412, [], curl=True),
    Case("If-Match with a weak ETag → 412 (strong comparison)",
         {"If-Match": "{weak_etag}"}, 412, []),
    Case("If-Match with the ETag → 200", {"If-Match": "{etag}"}, 200),
    Case("If-Match * → 200", {"If-Match": "*"}, 200),
    Case("If-Unmodified-Since an older date → 412",
         {"If-Unmodified-Since": "{before}"}, 412, [], curl=True),
    Case("If-Unmodified-Since the Last-Modified → 200", {"If-Unmodified-Since": "{lm}"}, 200),
    Case("If-Match failing wins over Range",
         {"If-Match": '"other"', "Range": "bytes=0-9"}, 412, []),
    Case("If-None-Match matching wins over Range",
         {"If-None-Match": "{etag}", "Range": "bytes=0-9"}, 304, []),
    Case("HEAD with Range → 206 headers, no body",
         {"Range": "bytes=0-99"}, 206, [(0, 99)], method="HEAD", curl=True),
    Case("HEAD with multiple ranges", {"Range": "bytes=0-9,20-29"}, 206, [(0, 9), (20, 29)],
         method="HEAD"),
]

EMPTY_CASES: list[Case] = [
    Case("zero-length file: GET → 200 empty", curl=True),
    Case("zero-length file: HEAD → 200", method="HEAD"),
    Case("zero-length file: a Range is ignored", {"Range": "bytes=0-"}, 200),
    Case("zero-length file: If-None-Match → 304", {"If-None-Match": "{etag}"}, 304, []),
]


def check(case: Case, res: Resource, status: int, headers: dict[str, str], body: bytes) -> None:
    """Assert that a response matches `case`; the message names the case and the field."""
    size = len(res.data)
    where = f"[{case.name}]"
    assert status == case.status, f"{where} status {status}, expected {case.status}"
    assert headers.get("access-control-allow-origin") == "*", f"{where} no CORS header"
    if status in (200, 206, 304):
        assert headers.get("etag") == res.etag, f"{where} ETag {headers.get('etag')!r}"
    if status in (200, 206):
        assert headers.get("accept-ranges") == "bytes", f"{where} no Accept-Ranges: bytes"
    if status == 304:
        assert body == b"", f"{where} 304 with a body"
        return
    if status in (412, 416):
        if status == 416:
            want = f"bytes */{size}"
            assert headers.get("content-range") == want, f"{where} Content-Range {headers}"
        assert body == b"", f"{where} {status} should have an empty body"
        return
    spans = case.spans(size)
    expected_parts = [res.data[a : b + 1] for a, b in spans]
    length = int(headers.get("content-length", "-1"))
    if case.method == "HEAD":
        assert body == b"", f"{where} HEAD with a body"
    else:
        assert length == len(body), f"{where} Content-Length {length} but {len(body)} bytes"
    if status == 200:
        assert "content-range" not in headers, f"{where} 200 with Content-Range"
        if case.method != "HEAD":
            assert body == res.data, f"{where} body differs from the resource"
        assert length == size, f"{where} Content-Length {length}, expected {size}"
        return
    if len(spans) == 1:
        a, b = spans[0]
        cr = headers.get("content-range")
        assert cr == f"bytes {a}-{b}/{size}", f"{where} Content-Range {cr!r}"
        assert length == b - a + 1, f"{where} Content-Length {length}"
        if case.method != "HEAD":
            assert body == expected_parts[0], f"{where} range bytes differ"
        return
    boundary = boundary_of(headers.get("content-type", ""))
    assert boundary, f"{where} Content-Type {headers.get('content-type')!r} is not multipart"
    if case.method == "HEAD":
        return
    parts = byteranges.split(headers.get("content-type", ""), body)
    assert len(parts) == len(spans), f"{where} {len(parts)} parts, expected {len(spans)}"
    for (part_headers, part), (a, b), want in zip(parts, spans, expected_parts, strict=True):
        cr = part_headers.get("content-range")
        assert cr == f"bytes {a}-{b}/{size}", f"{where} part Content-Range {cr!r}"
        assert "content-type" in part_headers, f"{where} part without Content-Type"
        assert part == want, f"{where} part {a}-{b} bytes differ"
