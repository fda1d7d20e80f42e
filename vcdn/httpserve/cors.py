"""CORS for media served to browser players (Fetch standard, "CORS protocol"), pure.

Content is public (authorization lives in the signed URL path, not in cookies), so any
origin may read it; players read Content-Range and friends, which must be exposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

ALLOW_ORIGIN: Final = ("Access-Control-Allow-Origin", "*")
EXPOSE: Final = (
    "Access-Control-Expose-Headers",
    "Content-Length, Content-Range, ETag, Age, Via",
)
RESPONSE_HEADERS: Final = (ALLOW_ORIGIN, EXPOSE)

ALLOWED_METHODS: Final = "GET, HEAD, OPTIONS"
ALLOWED_REQUEST_HEADERS: Final = (
    "Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since"
)
#: Browsers cap this (Chromium at 2 h); one day lets the others skip repeated preflights.
MAX_AGE: Final = "86400"


def preflight_headers(request_headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Headers of the 204 answering an OPTIONS request (a preflight or a plain OPTIONS).

    Requested headers are echoed: they are harmless here and a player that adds its own
    (e.g. a session id) would otherwise fail the preflight.
    """
    asked = request_headers.get("Access-Control-Request-Headers")
    return (
        ALLOW_ORIGIN,
        ("Access-Control-Allow-Methods", ALLOWED_METHODS),
        ("Access-Control-Allow-Headers", asked.strip() if asked else ALLOWED_REQUEST_HEADERS),
        ("Access-Control-Max-Age", MAX_AGE),
        ("Allow", ALLOWED_METHODS),
        ("Content-Length", "0"),
    )
