"""`multipart/byteranges` framing (RFC 9110 §14.6), pure.

The layout of a multi-range response is computed before a byte is sent: every part's
header bytes, the closing delimiter and the exact total length. The response then carries
a Content-Length and is never chunked, and the sender can push each part's body with
sendfile between the precomputed header bytes::

    layout = plan_multipart(ranges, size, "video/mp4")
    for part in layout.parts:
        write(part.header); sendfile(part.range.first, part.range.length)
    write(layout.trailer)

A hit lays out from its stored version's `MultipartTemplate` (``template.layout(ranges)``),
built once: per request only the offsets are formatted.

`split_byteranges` is the inverse, for tests and for an edge that receives such a body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from vcdn.errors import ClientError
from vcdn.ranges import ByteRange, parse_content_range

CRLF: Final = b"\r\n"
#: RFC 2046 §5.1.1: a boundary is 1 to 70 characters; these never occur in the parts'
#: headers and, at 96 random bits, practically never in the media bytes.
_BOUNDARY_BYTES: Final = 12
_BOUNDARY_RE: Final = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")


def new_boundary() -> str:
    return "vcdn-" + secrets.token_hex(_BOUNDARY_BYTES)


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: the bytes to write before it, then `range` of the representation."""

    header: bytes
    range: ByteRange


@dataclass(frozen=True, slots=True)
class MultipartLayout:
    boundary: str
    parts: tuple[Part, ...]
    trailer: bytes
    content_length: int

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def assemble(self, data: bytes | memoryview) -> bytes:
        """The whole body, given the whole representation (for bodies held in RAM)."""
        view = memoryview(data)
        out = bytearray()
        for part in self.parts:
            out += part.header
            out += view[part.range.first : part.range.last + 1]
        out += self.trailer
        return bytes(out)


@dataclass(frozen=True, slots=True)
class MultipartTemplate:
    """The framing every multi-range answer of one representation shares, built once per
    stored version: a part header differs from the next only by its two offsets, so a hit
    formats two numbers instead of laying the whole framing out again. Its boundary is
    drawn once per version, after the bytes it delimits exist (RFC 2046 §5.1.1: it must
    not occur in them), so no content can be made to contain it."""

    boundary: str
    size: int
    #: ``--boundary CRLF Content-Type: ... CRLF Content-Range: bytes `` (the first part's;
    #: the others' start with the CRLF that belongs to their delimiter).
    opening: bytes
    #: ``/size CRLF CRLF``: what follows a part's ``first-last``.
    closing: bytes
    trailer: bytes

    @classmethod
    def of(cls, size: int, content_type: str, boundary: str | None = None) -> MultipartTemplate:
        boundary = boundary or new_boundary()
        if not _BOUNDARY_RE.match(boundary):
            raise ValueError(f"invalid multipart boundary {boundary!r}")
        delimiter = b"--" + boundary.encode("ascii")
        fields = f"Content-Type: {content_type}\r\nContent-Range: bytes "
        opening = delimiter + CRLF + fields.encode("latin-1")
        return cls(boundary, size, opening, f"/{size}\r\n\r\n".encode("ascii"),
                   CRLF + delimiter + b"--" + CRLF)

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def layout(self, ranges: Sequence[ByteRange]) -> MultipartLayout:
        """The layout of `ranges` (satisfiable, inside the representation, as
        `vcdn.ranges.parse_range` returns them)."""
        opening, closing = self.opening, self.closing
        parts: list[Part] = []
        total = len(self.trailer)
        for r in ranges:
            # RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter.
            header = b"%s%s%d-%d%s" % (CRLF if parts else b"", opening, r.first, r.last, closing)
            parts.append(Part(header, r))
            total += len(header) + r.last - r.first + 1
        return MultipartLayout(self.boundary, tuple(parts), self.trailer, total)


def plan_multipart(
    ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str | None = None
) -> MultipartLayout:
    """Lay out a multipart/byteranges body for `ranges` of a `size`-byte representation."""
    return MultipartTemplate.of(size, content_type, boundary).layout(ranges)


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a ``multipart/byteranges`` Content-Type, if any."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/byteranges":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None


def split_byteranges(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges body into (lower-cased headers, part bytes) pairs.

    Raises `ClientError` when the body is not a well-formed multipart body.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    out: list[tuple[dict[str, str], bytes]] = []
    pos = body.find(delimiter)
    if pos < 0:
        raise ClientError("multipart body has no delimiter")
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            return out
        if not body.startswith(CRLF, pos):
            raise ClientError("multipart delimiter is not followed by CRLF")
        head_end = body.find(CRLF + CRLF, pos)
        if head_end < 0:
            raise ClientError("multipart part has no header terminator")
        headers: dict[str, str] = {}
        for line in body[pos + 2 : head_end].split(CRLF):
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ClientError(f"malformed multipart header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        start = head_end + 4
        # The part's Content-Range says how long it is; searching for the delimiter is
        # only a fallback, since media bytes may contain anything.
        span = parse_content_range(headers.get("content-range"))
        nxt = start + (span[1] - span[0] + 1) if span else body.find(CRLF + delimiter, start)
        if nxt < 0 or not body.startswith(CRLF + delimiter, nxt):
            raise ClientError("multipart part is not closed by a delimiter")
        out.append((headers, body[start:nxt]))
        pos = nxt + 2
