"""Which stored response may answer a request (RFC 9111 §4): the Vary variant a fill's
request headers select, whether a fill in flight may be shared, and an entry's
freshness policy as stored."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable

from aiohttp import web

from edge import freshness, vary
from edge.store import Entry


def variant(candidates: Iterable[Entry], sent: dict[str, str]) -> Entry | None:
    """The stored Vary variant among `candidates` (`CacheStore.variants`) that answers a
    request whose fill would send `sent` (edge.vary); the most recent one if several do
    (§4.1)."""
    found = [e for e in candidates if selects(e, sent)]
    return max(found, key=lambda e: e.response_time) if found else None


def selects(entry: Entry, sent: dict[str, str]) -> bool:
    values = [v for n, v in entry.headers if n.lower() == "vary"]
    return vary.selects(entry.key, ", ".join(values) or None, sent)


def shareable(draft: Entry, request: web.Request, sent: dict[str, str]) -> bool:
    """May the fill in flight with head `draft` also answer `request`? Concurrent
    requests share a fill (collapsed forwarding) unless the response says it may not
    answer this one unasked: another Vary variant, no-cache, an explicit lifetime
    already spent, or the request's own directives. A response with no freshness
    information is shared with those who arrive while it streams, as before."""
    if not selects(draft, sent):
        return False
    pol = policy(draft)
    if not freshness.explicit(_fields(draft)):
        pol = dataclasses.replace(pol, lifetime=math.inf)
    age = freshness.current_age(draft.initial_age, draft.response_time, time.time())
    return freshness.judge(pol, age, request.headers).fresh


def _fields(entry: Entry) -> dict[str, str]:
    headers = dict(entry.headers)
    if entry.cache_control:
        headers["Cache-Control"] = entry.cache_control
    return headers


def policy(entry: Entry) -> freshness.Policy:
    pol = freshness.policy(_fields(entry), entry.response_time)
    # The stored lifetime was computed once at fill time (Expires against Date, heuristics).
    return freshness.Policy(
        lifetime=entry.lifetime,
        no_cache=pol.no_cache,
        must_revalidate=pol.must_revalidate,
        stale_if_error=pol.stale_if_error,
        immutable=pol.immutable,
    )
