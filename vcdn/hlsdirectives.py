"""LL-HLS delivery directives (draft-pantos-hls-rfc8216bis §6.2.5), pure.

A player asks for a future playlist with ``_HLS_msn=M[&_HLS_part=P]`` (blocking reload)
and for a delta update with ``_HLS_skip=YES|v2``. The origin answers them and the edge
keys its cache with them, so both parse them here, the same way, and the edge sends the
one canonical form upstream: two spellings of one request are one cache entry and one
upstream request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from vcdn.errors import ClientError

MSN: Final = "_HLS_msn"
PART: Final = "_HLS_part"
SKIP: Final = "_HLS_skip"
SKIP_VALUES: Final = ("YES", "v2")
#: Media sequence numbers are unsigned 64-bit integers (§4.4.3.2); no more digits than that.
MAX_DIGITS: Final = 20


class BadDirective(ClientError):
    """§6.2.5.2: a malformed directive, or _HLS_part without _HLS_msn, is a 400."""


@dataclass(frozen=True, slots=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: str | None = None  # "YES" or "v2"

    @property
    def blocking(self) -> bool:
        return self.msn is not None

    @property
    def empty(self) -> bool:
        return self.msn is None and self.skip is None

    def query(self) -> str:
        """The canonical query string (empty when there are no directives)."""
        out = []
        if self.msn is not None:
            out.append(f"{MSN}={self.msn}")
        if self.part is not None:
            out.append(f"{PART}={self.part}")
        if self.skip is not None:
            out.append(f"{SKIP}={self.skip}")
        return "&".join(out)


def _number(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > MAX_DIGITS:
        raise BadDirective(f"{name} must be a decimal integer, not {text[:40]!r}.")
    return int(text)


def parse_directives(query: str) -> Directives:
    """The directives of a playlist request's query; other parameters are ignored
    (players add cache busters). BadDirective for a malformed or repeated directive and
    for ``_HLS_part`` without ``_HLS_msn``."""
    seen: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in (MSN, PART, SKIP):
            if name in seen:
                raise BadDirective(f"{name} is given twice.")
            seen[name] = value
    msn = _number(MSN, seen[MSN]) if MSN in seen else None
    part = _number(PART, seen[PART]) if PART in seen else None
    if part is not None and msn is None:
        raise BadDirective(f"{PART} needs {MSN} (rfc8216bis §6.2.5.2).")
    skip = seen.get(SKIP)
    if skip is not None and skip not in SKIP_VALUES:
        raise BadDirective(f"{SKIP} must be YES or v2, not {skip[:40]!r}.")
    return Directives(msn, part, skip)
