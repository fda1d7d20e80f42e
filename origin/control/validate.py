"""Checks beyond types, pure: what `vcdn.schemas.decode` cannot see.

Ids travel in URL paths and file paths are handed to appliances that fetch them from the
origin, so both are held to a small safe alphabet here, once, where data enters. The
OpenAPI document states the same constraints (`openapi.CONSTRAINTS`).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from vcdn.errors import ClientError
from vcdn.prefixes import parse_prefix
from vcdn.schemas import Heartbeat, Registration, TitleManifest
from vcdn.titles import TITLE_RE, validate_title

# Appliance and site ids follow the title id rule of `vcdn.titles`: safe in URL paths.
ID_PATTERN: Final = TITLE_RE.pattern
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
_ID_RE: Final = re.compile(ID_PATTERN)
_SHA_RE: Final = re.compile(SHA256_PATTERN)
MAX_PATH_CHARS: Final = 1024
MAX_PREFIXES: Final = 4096
MAX_SIZE: Final = 2**50  # 1 PiB: keeps sums of sizes far inside a 64-bit column


def check_id(value: str, what: str) -> str:
    if not _ID_RE.match(value):
        raise ClientError(
            f"{what} {value[:64]!r} must be 1-128 characters of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return value


def check_relative_path(path: str, where: str) -> None:
    """A path inside a title: relative, no '..', no backslash or NUL, not too long."""
    if (
        not path
        or len(path) > MAX_PATH_CHARS
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise ClientError(f"'{where}' must be a relative path inside the title, not {path[:80]!r}")


def check_title(m: TitleManifest) -> None:
    validate_title(m.title)
    for name, value in (("duration", m.duration), ("segment_seconds", m.segment_seconds)):
        if value < 0:
            raise ClientError(f"'{name}' must not be negative")
    seen: set[str] = set()
    for i, f in enumerate(m.files):
        check_relative_path(f.path, f"files[{i}].path")
        if f.path in seen:
            raise ClientError(f"'files[{i}].path' repeats {f.path!r}")
        seen.add(f.path)
        if not 0 <= f.size <= MAX_SIZE:
            raise ClientError(f"'files[{i}].size' must be between 0 and {MAX_SIZE}")
        if not _SHA_RE.match(f.sha256):
            raise ClientError(f"'files[{i}].sha256' must be 64 lowercase hex digits")
    for i, r in enumerate(m.renditions):
        check_relative_path(r.playlist, f"renditions[{i}].playlist")
        if min(r.width, r.height, r.bandwidth, r.average_bandwidth) < 0 or r.frame_rate < 0:
            raise ClientError(f"'renditions[{i}]' has a negative size, bandwidth or frame rate")


def _https_url(value: str) -> bool:
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return (url.scheme == "https" and bool(url.hostname) and len(value) <= 2048
            and value.isascii() and not any(c.isspace() for c in value))


def check_registration(r: Registration) -> None:
    check_id(r.id, "appliance id")
    check_id(r.site, "site")
    try:
        url = urlsplit(r.public_url)
        ok = url.scheme in ("http", "https") and bool(url.hostname) and len(r.public_url) <= 2048
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False  # urlsplit's own complaints: bad IPv6 brackets, port out of range
    if not ok or not r.public_url.isascii() or any(c.isspace() for c in r.public_url):
        raise ClientError("'public_url' must be an absolute http:// or https:// URL in ASCII")
    if r.tls_url and not _https_url(r.tls_url):
        raise ClientError("'tls_url' must be empty or an absolute https:// URL in ASCII")
    if not 0 <= r.capacity_bytes <= MAX_SIZE * 1024:
        raise ClientError(f"'capacity_bytes' must be between 0 and {MAX_SIZE * 1024}")
    if not 0 <= r.asn <= 4294967295:
        raise ClientError("'asn' must be between 0 and 4294967295")
    if not (-90.0 <= r.lat <= 90.0 and -180.0 <= r.lon <= 180.0):
        raise ClientError("'lat' must be within ±90 and 'lon' within ±180")
    if len(r.prefixes) > MAX_PREFIXES:
        raise ClientError(f"at most {MAX_PREFIXES} client prefixes")
    for i, prefix in enumerate(r.prefixes):
        parse_prefix(prefix, f"prefixes[{i}]")  # widths: vcdn.prefixes.check_width


MAX_CHECKS: Final = 64
MAX_CHECK_NAME: Final = 200


def check_heartbeat(
    h: Heartbeat, max_titles: int = 10_000, max_count: int = 10_000_000, *, titles: bool = True
) -> None:
    """`titles=False`: the counts were checked already (`beat_parse.title_counts`)."""
    load = h.load
    numbers = {
        "free_bytes": h.free_bytes,
        "used_bytes": h.used_bytes,
        "objects": h.objects,
        "bytes_served": h.bytes_served,
        "load.requests_per_s": load.requests_per_s,
        "load.bytes_per_s": load.bytes_per_s,
        "load.connections": load.connections,
    }
    for name, value in numbers.items():
        if value < 0:
            raise ClientError(f"'{name}' must not be negative")
    if not 0.0 <= h.hit_ratio <= 1.0:
        raise ClientError("'hit_ratio' must be between 0 and 1")
    if titles:
        check_title_counts(h.title_requests, max_titles, max_count)
    if len(h.checks) > MAX_CHECKS:
        raise ClientError(f"'checks' has {len(h.checks)} entries; at most {MAX_CHECKS}")
    for name in h.checks:
        if len(name) > MAX_CHECK_NAME:
            raise ClientError(f"a name in 'checks' is longer than {MAX_CHECK_NAME} characters")


def check_title_counts(counts: dict[str, int], max_titles: int, max_count: int) -> None:
    if len(counts) > max_titles:
        raise ClientError(
            f"'title_requests' lists {len(counts)} titles; at most {max_titles} per "
            "heartbeat (setting heartbeat_max_titles)"
        )
    for title, count in counts.items():
        if not _ID_RE.match(title):
            check_id(title, "title in 'title_requests'")
        if not 0 <= count <= max_count:
            raise ClientError(
                f"'title_requests.{title}' must be between 0 and {max_count} "
                "(setting heartbeat_max_count)"
            )


def check_text(value: Any, where: str = "body") -> None:
    """Every string (and key) in decoded JSON is storable text: no NUL, no lone surrogate.

    JSON allows ``\\u0000`` and unpaired ``\\ud800`` escapes (RFC 8259 §8.2 calls the
    latter's behaviour unpredictable); neither PostgreSQL text nor UTF-8 can hold them, so
    they are the client's error here rather than a database error later.
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item, where)
        elif isinstance(item, dict):
            for key, sub in item.items():
                _check_string(key, where)
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _check_string(text: str, where: str) -> None:
    if "\0" in text:
        raise ClientError(f"A string in the {where} contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(
            f"A string in the {where} is not valid Unicode (lone surrogate)."
        ) from None
