"""What a fill does with the upstream's answer, pure: revalidated, not storable, or a
draft to store.

Given the answer's status and headers (and when it came), the stale entry the fill asked
about conditionally, the cache's capacity and the request fields the fill sent:

* `Revalidated`: a 304 to our conditional request: the stored entry's new metadata
  (RFC 9111 §4.3.4, `edge.revalidate`);
* `NotStorable`: the answer goes to one waiter as a pass-through, with the reason
  (RFC 9111 §3: no-store, private, an uncacheable status, or larger than the cache);
* `StoreDraft`: the Entry to publish once the body is written: its key (a Vary answer is
  a variant, keyed by the fields this fill sent), headers and freshness.

`edge.fill` does everything around it: locks, the temp file and sidecar, streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy

from edge import freshness, vary
from edge.revalidate import refreshed
from edge.store import Entry
from vcdn.httpserve.validators import format_http_date, parse_http_date


@dataclass(frozen=True, slots=True)
class Revalidated:
    """The stored entry is still good: these are its changed fields (`CacheStore.refresh`)."""

    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NotStorable:
    reason: str


@dataclass(frozen=True, slots=True)
class StoreDraft:
    """Store the body as `draft` (size -1 when the answer has no Content-Length)."""

    draft: Entry
    length: int | None


Decision = Revalidated | NotStorable | StoreDraft


def conditional(request: Mapping[str, str], stale: Entry | None) -> dict[str, str]:
    """The fill's request fields: the first requester's, plus our validators of `stale`."""
    headers = dict(request)
    if stale is not None:
        if stale.etag:
            headers["If-None-Match"] = stale.etag
        if stale.last_modified is not None:
            headers["If-Modified-Since"] = format_http_date(stale.last_modified)
    return headers


def decide(
    *,
    key: str,
    title: str,
    path: str,
    status: int,
    headers: CIMultiDictProxy[str],
    request_time: float,
    response_time: float,
    stale: Entry | None,
    capacity: int,
    request: Mapping[str, str],
    content_type: Callable[[str], str],
) -> Decision:
    """The fate of the upstream's answer to a fill of `key` (see module doc)."""
    if status == 304 and stale is not None:
        return Revalidated(refreshed(stale, headers.items(), request_time, response_time))
    ok, why = freshness.storable("GET", status, {}, headers)
    length = content_length(headers)
    if ok and length is not None and length > capacity:
        ok, why = False, "larger than the cache"
    if not ok:
        return NotStorable(why)
    # A Vary response is stored as a variant, keyed by the fields this fill sent.
    store_key = vary.storage_key(
        vary.primary_of(key), ", ".join(headers.getall("Vary", [])), request
    )
    draft = draft_entry(
        store_key or key, title, path, headers, request_time, response_time, length,
        content_type,
    )
    return StoreDraft(draft, length)


def draft_entry(
    key: str,
    title: str,
    path: str,
    h: CIMultiDictProxy[str],
    request_time: float,
    response_time: float,
    length: int | None,
    content_type: Callable[[str], str],
) -> Entry:
    """The Entry a stored answer becomes (its size set once the body is written)."""
    lm_text = h.get("Last-Modified")
    lm = parse_http_date(lm_text) if lm_text else None
    pol = freshness.policy(h, response_time)
    return Entry(
        key=key,
        title=title,
        path=path,
        size=-1 if length is None else length,
        content_type=h.get("Content-Type") or content_type(path),
        etag=h.get("ETag"),
        last_modified=float(lm) if lm is not None else None,
        cache_control=", ".join(h.getall("Cache-Control", [])) or None,
        headers=tuple(freshness.end_to_end(list(h.items()))),
        response_time=response_time,
        initial_age=freshness.initial_age(h, request_time, response_time),
        lifetime=pol.lifetime,
    )


def content_length(headers: Mapping[str, str]) -> int | None:
    text = headers.get("Content-Length")
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())
