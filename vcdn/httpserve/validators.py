"""Validators (RFC 9110 §8.8): entity tags and HTTP dates, pure.

Parsing is lenient where being strict would only hurt a player (an unquoted tag is taken
as a strong opaque tag), and conservative where a wrong guess would serve the wrong bytes:
a list we cannot parse matches nothing.
"""

from __future__ import annotations

import calendar
import os
import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from typing import Final

#: RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE.
_TAG_RE: Final = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_BARE_RE: Final = re.compile(r"\s*([!#-~]+?)\s*(?:,|$)")
#: RFC 9110 §5.6.7: IMF-fixdate is what we send; rfc850 and asctime are obsolete but
#: recipients MUST accept them.
_DATE_FORMATS: Final = (
    "%a, %d %b %Y %H:%M:%S GMT",
    "%A, %d-%b-%y %H:%M:%S GMT",
    "%a %b %d %H:%M:%S %Y",
)


@dataclass(frozen=True, slots=True)
class ETag:
    """An entity tag; `value` is the opaque tag without quotes."""

    value: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.value}"'


STAR: Final = "*"


def parse_etag_list(header: str) -> tuple[ETag, ...] | str | None:
    """`If-Match`/`If-None-Match` value → tags, the string ``"*"``, or None if malformed."""
    text = header.strip()
    if text == STAR:
        return STAR
    tags: list[ETag] = []
    pos = 0
    while pos < len(text):
        m = _TAG_RE.match(text, pos)
        if m is None:
            bare = _BARE_RE.match(text, pos)
            if bare is None or '"' in bare.group(1):
                return None
            tags.append(ETag(bare.group(1)))
            pos = bare.end()
            continue
        tags.append(ETag(m.group(2), weak=m.group(1) is not None))
        pos = m.end()
    return tuple(tags) if tags else None


def parse_etag(header: str) -> ETag | None:
    """A single entity tag (If-Range); None when it is not one."""
    tags = parse_etag_list(header)
    if isinstance(tags, tuple) and len(tags) == 1:
        return tags[0]
    return None


def strong_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2: both strong and identical."""
    return not a.weak and not b.weak and a.value == b.value


def weak_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2: identical opaque tags, weakness ignored."""
    return a.value == b.value


@lru_cache(maxsize=256)
def parse_http_date(text: str) -> int | None:
    """An HTTP-date → POSIX seconds, or None when it is not a valid date (then ignored)."""
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            parsed = time.strptime(text, fmt)
        except ValueError:
            continue
        return calendar.timegm(parsed)
    return None


def format_http_date(seconds: float) -> str:
    """POSIX seconds → IMF-fixdate (RFC 9110 §5.6.7)."""
    return formatdate(int(seconds), usegmt=True)


def sha256_etag(sha256_hex: str) -> str:
    """A strong ETag field value from a content sha256 (the manifest's checksum)."""
    return f'"{sha256_hex.lower()}"'


def stat_etag(st: os.stat_result) -> str:
    """A strong ETag from (inode, size, mtime) when no checksum is known, as nginx does.

    Strong is right here: a rewrite of the file changes mtime and, through the atomic
    rename the packager and the cache use, the inode.
    """
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
