"""What a 304 does to a stored response, pure (RFC 9111 §4.3.4).

The stored header fields are updated from the 304's, except those that describe the
stored body and its validators: a 304 for the stored ETag cannot change the bytes we
hold, so Content-Length, Content-Range, Content-Encoding, Content-MD5 and ETag stay
(the conformance suite's update304 tests and nginx agree). Content-Type, Cache-Control,
Expires and the rest are replaced, so freshness is recomputed from the merged fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multidict import CIMultiDict

from edge import freshness
from edge.store import Entry


def refreshed(
    stale: Entry, answer: Iterable[tuple[str, str]], request_time: float, response_time: float
) -> dict[str, Any]:
    """The `CacheStore.refresh` changes for `stale` after a 304 with fields `answer`."""
    stored = [*stale.headers]
    if stale.cache_control:
        stored.append(("Cache-Control", stale.cache_control))
    merged = freshness.merge_304(stored, answer)
    fields: CIMultiDict[str] = CIMultiDict(merged)
    pol = freshness.policy(fields, response_time)
    cache_control = ", ".join(fields.getall("Cache-Control", [])) or None
    return {
        "etag": stale.etag,
        "content_type": fields.get("Content-Type", stale.content_type),
        "cache_control": cache_control,
        "headers": tuple(freshness.end_to_end(merged)),
        "response_time": response_time,
        "initial_age": freshness.initial_age(fields, request_time, response_time),
        "lifetime": pol.lifetime,
    }
