"""Low-latency HLS through the edge: blocking playlist requests keyed with their
``_HLS_*`` directives (draft-pantos-hls-rfc8216bis §6.2.5 and its CDN tuning appendix).

The query of a video URL is otherwise neither part of the key nor sent upstream
(`edge.keys`). A media playlist request with delivery directives is different: each
``(playlist, _HLS_msn, _HLS_part, _HLS_skip)`` names one future version of the playlist,
so it is its own cache entry, and the edge's ordinary coalesced fill turns however many
players wait on it into one upstream request (across worker processes too, through the
fill lock). The origin marks such an answer fresh for six target durations, as the
appendix advises, so a player arriving late is answered from the cache.

The directives go upstream in their one canonical form (other parameters, such as cache
busters, are dropped), so two spellings are one entry and one fetch. Parts, including
the preload-hinted one, are ordinary objects: the fill streams them to every waiting
player as the origin writes them (read-while-writer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from aiohttp import web

from vcdn.hlsdirectives import BadDirective, parse_directives
from vcdn.httpserve.middleware import error_response

U = TypeVar("U")
__all__ = ["BadDirective", "blocking_key", "playlist_key", "refused_directive",
           "shared_refusal"]
#: As the origin marks its refusals (origin.content.llplaylist): kept a moment by caches.
REFUSED_CACHE_CONTROL: Final = "public, max-age=1"


def playlist_key(
    key: str, target: Callable[[U], str], path: str, query: str
) -> tuple[str, Callable[[U], str]]:
    """The cache key and upstream target of a request; unchanged unless it is a media
    playlist request with directives. BadDirective (400) for malformed directives, as the
    origin would answer, without asking it."""
    if not query or not path.endswith(".m3u8"):
        return key, target
    directives = parse_directives(query)
    if directives.empty:
        return key, target
    canonical = directives.query()

    def with_directives(up: U) -> str:
        return f"{target(up)}?{canonical}"

    return f"{key}?{canonical}", with_directives


def refused_directive(exc: BadDirective) -> web.Response:
    """The 400 the origin would give (§6.2.5.2), answered here without asking it."""
    resp = error_response(400, "bad_directive", str(exc))
    resp.headers["Cache-Control"] = REFUSED_CACHE_CONTROL
    return resp


def fast_query(raw: str) -> tuple[str, str | None]:
    """(the target without its query, the key suffix) for the hit fast path: ``""`` for no
    query, ``"?<directives>"`` for a media playlist request with directives (a blocking
    answer a crowd of players asks for again is a hit like any other), None when the full
    path must answer (another query, malformed directives)."""
    target, mark, query = raw.partition("?")
    if not mark:
        return raw, ""
    if not target.endswith(".m3u8"):
        return target, None
    try:
        directives = parse_directives(query)
    except BadDirective:
        return target, None
    if directives.empty:
        return target, None
    return target, "?" + directives.query()


#: How long a waiter of a blocking request looks for the refusal the first one is keeping.
REFUSAL_WAIT_S: Final = 0.5


def blocking_key(key: str) -> bool:
    return "?_HLS_" in key


async def shared_refusal(negative: Any, key: str) -> Any:
    """The error answer (a 503 after three target durations) that the waiter which took a
    blocking fill's response is keeping, so that the crowd which waited with it does not
    ask the origin once each and wait three more target durations; None if it is not kept
    (no explicit freshness), and the caller asks upstream itself."""
    deadline = time.monotonic() + REFUSAL_WAIT_S
    while True:
        item = negative.get(key, time.time())
        if item is not None or time.monotonic() >= deadline:
            return item
        await asyncio.sleep(0.005)
