"""Misses of the edge: everything a stored fresh hit does not answer.

`serve` takes a GET/HEAD through the cache: revalidate a stale object, answer from a
kept error, join or start a fill (streaming its growing file), pass a range through
unstored, relay what may not be stored; `stale-if-error` lets a stale object stand in
for an upstream failure. Hits are the hit planner's (`edge.fastpath`,
`vcdn.httpserve.hit`), in this worker's memory or the shared index, Vary variants
included; what reaches `serve` fresh is only what the hit path declined (a fill of the
key in flight here, a variant keyed by the client's address, a file gone meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from edge import cachestatus, forwarding, freshness
from edge.engine import CACHE_STATUS, Edge, mark
from edge.fastpath import send_stored
from edge.fill import VIA, FillFailed, Pass, Tail
from edge.llhls import blocking_key, shared_refusal
from edge.llstream import send_growing, streams
from edge.negative import BODY_MAX, Negative
from edge.selection import policy, selects, shareable, variant
from edge.serve import plan_for, relay, send_tail
from edge.store import Entry
from edge.upstream import Upstream
from vcdn.errors import UpstreamError, VcdnError
from vcdn.httpserve.middleware import error_response
from vcdn.logs import event

log = logging.getLogger("vcdn.edge")


async def serve(
    request: web.Request,
    edge: Edge,
    *,
    key: str,
    title: str,
    path: str,
    target: Callable[[Upstream], str],
    catalog: bool = False,
) -> web.StreamResponse:
    """GET/HEAD through the cache: hit, revalidate, join or start a fill, or pass through.

    `catalog`: the object belongs to a title this appliance serves (a whole fill on a range
    miss is wanted); otherwise a range miss of a large object passes through unstored."""
    assert edge.fills is not None
    edge.check_purges()
    stats = edge.stats
    # What a fill for this request sends upstream: Vary variants are chosen by it.
    sent = _fill_headers(request, edge)
    filling = edge.fills.inflight(key)
    if filling is not None and filling.draft is not None and not shareable(
        filling.draft, request, sent
    ):
        # The fill in flight answers an earlier request, and its response may not answer
        # this one (no-cache, an Age past its lifetime, another Vary variant): wait for
        # it to land and decide on what is stored then (§4).
        await filling.finished()
    # Not in this worker's memory: the shared index may hold it (filled by another worker,
    # or before a restart). A WAL read on the loop thread, no executor hop.
    entry = edge.store.get(key)
    if entry is None and edge.fills.inflight(key) is None:
        entry = edge.store.peek(key) or variant(edge.store.variants(key), sent)
    stale: Entry | None = None
    usable_on_error = False
    if entry is not None:
        age = freshness.current_age(entry.initial_age, entry.response_time, time.time())
        verdict = freshness.judge(policy(entry), age, request.headers)
        if verdict.fresh:
            done = await _hit(request, edge, entry, title, "hit")
            if done is not None:
                return done
            entry = None
        else:
            stale, usable_on_error = entry, verdict.usable_on_error
    req_cc = freshness.parse_cache_control(request.headers.get("Cache-Control"))
    if "only-if-cached" in req_cc:
        # §5.2.1.7: nothing fresh stored, and the client (often a peer) forbids going
        # upstream for it.
        stats.request("miss", title)
        mark(request, "none", detail="only-if-cached")
        return error_response(504, "not_cached", "Not in this cache (only-if-cached).")
    if stale is None:
        negative = edge.negative.get(key, time.time())
        if negative is not None:
            stats.request("negative", title)
            mark(request, "negative")
            return _negative_response(request, negative)
        if (
            (request.method == "HEAD" or "Range" in request.headers)
            and edge.fills.inflight(key) is None
            and not (catalog or (title and edge.store.is_pinned_title(title)))
        ):
            return await _range_pass(request, edge, key=key, title=title, path=path, target=target)
    try:
        outcome = await edge.fills.obtain(
            stale.key if stale is not None else key, title=title, path=path, target=target,
            stale=stale, headers=sent,
        )
    except UpstreamError:
        if stale is not None and usable_on_error:
            event(log, "served_stale", key=key)
            done = await _hit(request, edge, stale, title, "stale")
            if done is not None:
                return done
        raise
    chosen = outcome.fill.draft if isinstance(outcome, Tail) else outcome
    if isinstance(chosen, Entry) and not selects(chosen, sent):
        # We joined a fill made for a request with other Vary fields: not ours to share.
        if isinstance(outcome, Tail):
            os.close(outcome.fd)
        outcome = None
    if isinstance(outcome, Entry):
        result = "revalidated" if stale is not None and outcome.id == stale.id else "miss"
        done = await _hit(request, edge, outcome, title, result, had_stale=stale is not None)
        if done is None:
            raise FillFailed(f"The object {key!r} vanished right after its fill.")
        if blocking_key(key):
            _blocking_answered(edge, outcome.response_time)
        return done
    if isinstance(outcome, Tail):
        stats.request("miss", title)
        mark(request, "miss", had_stale=stale is not None, stored=True)
        arrived = outcome.fill.draft.response_time if outcome.fill.draft else time.time()
        resp = await _serve_tail(request, edge, outcome, target)
        if blocking_key(key):
            _blocking_answered(edge, arrived)
        return resp
    if isinstance(outcome, Pass) and outcome.response.status >= 500 and usable_on_error:
        assert stale is not None
        outcome.response.close()
        event(log, "served_stale", key=key, upstream_status=outcome.response.status)
        done = await _hit(request, edge, stale, title, "stale")
        if done is not None:
            return done
        raise UpstreamError(f"The upstream answered {outcome.response.status} for {key!r}.")
    if isinstance(outcome, Pass) and request.method == "GET":
        kept = await _keep_negative(edge, key, request, outcome.response)
        if kept is not None:
            stats.request("pass", title)
            mark(request, "miss", fwd_status=kept.status, stored=True)
            return _negative_response(request, kept)
    stats.request("pass", title)
    if isinstance(outcome, Pass):
        mark(request, "pass", had_stale=stale is not None, fwd_status=outcome.response.status)
        resp, sent = await relay(request, outcome.response, request.get(CACHE_STATUS))
        stats.sent_bytes(outcome.response.source, sent)
        return resp
    # The fill turned out not storable and another waiter took its response: ask ourselves,
    # unless it is keeping the refusal of a blocking playlist request (edge.llhls).
    if blocking_key(key) and (kept := await shared_refusal(edge.negative, key)) is not None:
        stats.request("negative", title)
        return _negative_response(request, kept)
    assert edge.chain is not None
    up = await edge.chain.fetch("GET", target, forward_headers(request))
    mark(request, "pass", fwd_status=up.status)
    resp, sent = await relay(request, up, request.get(CACHE_STATUS))
    stats.sent_bytes(up.source, sent)
    return resp


def _blocking_answered(edge: Edge, arrived: float) -> None:
    edge.stats.blocking_renders.inc()
    edge.stats.blocking_answer.observe(max(0.0, time.time() - arrived))


async def _keep_negative(
    edge: Edge, key: str, request: web.Request, up: Any
) -> Negative | None:
    """Keep a non-200 answer (an error, a redirect, a 203 or 204) the upstream allows a
    cache to keep (edge.negative), or None (the caller relays `up`, still unread)."""
    lifetime = freshness.negative_lifetime(
        up.status, request.headers, up.headers, up.response_time, edge.settings.negative_ttl
    )
    length = up.headers.get("Content-Length", "")
    bodiless = up.status == 204  # RFC 9110 §15.3.5: no content, whatever the length says
    if lifetime <= 0 or not (bodiless or (length.isdigit() and int(length) <= BODY_MAX)):
        return None
    body = await up.read(BODY_MAX)  # also ends a 204's exchange with the upstream
    if bodiless:
        body = b""
    item = Negative(
        status=up.status,
        headers=tuple(freshness.end_to_end(up.headers.items()))
        + tuple((k, v) for k, v in up.headers.items() if k.lower() in _NEGATIVE_KEPT),
        body=body,
        response_time=up.response_time,
        expires=up.response_time + lifetime,
    )
    edge.negative.put(key, item)
    event(log, "negative_cached", key=key, status=up.status, seconds=round(lifetime, 3))
    return item


#: Computed fields that describe a kept error answer and go out with it again.
_NEGATIVE_KEPT: Final = frozenset({"content-type", "cache-control", "etag", "last-modified"})


def _negative_response(request: web.Request, item: Negative) -> web.Response:
    resp = web.Response(status=item.status, body=b"" if request.method == "HEAD" else item.body)
    for name, value in item.headers:
        resp.headers.add(name, value)
    resp.headers["Age"] = freshness.age_header(time.time() - item.response_time)
    resp.headers["Via"] = VIA
    return resp


async def _range_pass(
    request: web.Request,
    edge: Edge,
    *,
    key: str,
    title: str,
    path: str,
    target: Callable[[Upstream], str],
) -> web.StreamResponse:
    """A range (or HEAD) miss of an object nobody asked this edge to hold: ask the
    upstream for the range only (HEAD as HEAD) and relay it unstored, so a 1-byte range
    never costs a 100 MiB object. An object of at most `range_fill_max` bytes is then
    filled whole in the background (at most that many bytes more), so small files still
    become hits."""
    assert edge.chain is not None
    fill_headers = _fill_headers(request, edge)
    headers = dict(fill_headers)
    for name in ("Range", "If-Range"):
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    method = request.method
    up = await edge.chain.fetch(method, target, headers)
    length = up.headers.get("Content-Length", "")
    if (
        method == "GET"
        and up.status == 200
        and length.isdigit()
        and int(length) <= edge.settings.range_fill_max
    ):
        # The upstream ignores ranges and the object is small: fill it and answer the
        # range from the cache (one more fetch of at most `range_fill_max` bytes).
        up.close()
        return await serve(
            request, edge, key=key, title=title, path=path, target=target, catalog=True
        )
    if method == "GET" and up.status == 206:
        total = up.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit() and int(total) <= edge.settings.range_fill_max:
            task = asyncio.create_task(
                _fill_behind(edge, key, title, path, target, fill_headers)
            )
            edge.background.add(task)
            task.add_done_callback(edge.background.discard)
    edge.stats.request("pass", title)
    mark(request, "range", fwd_status=up.status)
    event(log, "range_passed", key=key, status=up.status)
    resp, sent = await relay(request, up, request.get(CACHE_STATUS))
    edge.stats.sent_bytes(up.source, sent)
    return resp


async def _fill_behind(
    edge: Edge,
    key: str,
    title: str,
    path: str,
    target: Callable[[Upstream], str],
    headers: dict[str, str],
) -> None:
    assert edge.fills is not None
    try:
        outcome = await edge.fills.obtain(
            key, title=title, path=path, target=target, headers=headers
        )
    except VcdnError:
        return  # logged by the fill; the client already has its range
    if isinstance(outcome, Pass):
        outcome.response.close()
    elif isinstance(outcome, Tail):
        os.close(outcome.fd)


async def _hit(
    request: web.Request, edge: Edge, entry: Entry, title: str, result: str,
    *, had_stale: bool = False,
) -> web.StreamResponse | None:
    """A stored entry's answer through the one hit pipeline (`edge.fastpath.send_stored`);
    None when its file went (evicted or purged by another worker)."""
    status = cachestatus.value(result, had_stale=had_stale, stored=result == "miss")
    done = await send_stored(request, edge, entry, status)
    if done is None:
        edge.store.forget(entry.key)
        return None
    edge.store.touch(entry.key)
    edge.stats.request(result, title)
    edge.stats.sent_bytes("cache", done[1])
    return done[0]


async def _serve_tail(
    request: web.Request, edge: Edge, tail: Tail, target: Callable[[Upstream], str]
) -> web.StreamResponse:
    fill = tail.fill
    try:
        size = fill.size
        if streams(request, tail):  # no Content-Length (an LL-HLS part being written)
            resp, sent = await send_growing(request, tail, live=edge.settings.live,
                                            status=request[CACHE_STATUS])
            edge.stats.sent_bytes(fill.source, sent)
            return resp
        if size is None:  # no Content-Length upstream: ranges need the end, so wait for it
            while not fill.done:
                await fill.wait_beyond(fill.written)
            if fill.error is not None or fill.entry is None:
                raise FillFailed(f"The fill of {fill.key!r} failed.")
            size = fill.entry.size
        assert fill.draft is not None
        plan = plan_for(request, fill.draft, size)
        far = edge.settings.far_ahead
        if (
            plan.status == 206
            and plan.multipart is None
            and plan.has_body
            and plan.spans[0].first > fill.written + far
        ):
            r = plan.spans[0]
            assert edge.chain is not None
            ahead = _fill_headers(request, edge)
            ahead["Range"] = f"bytes={r.first}-{r.last}"
            up = await edge.chain.fetch("GET", target, ahead)
            if up.status == 206 and up.headers.get("Content-Range") == r.content_range(size):
                resp, sent = await relay(request, up, request.get(CACHE_STATUS))
                edge.stats.sent_bytes(up.source, sent)
                return resp
            up.close()
        resp, sent = await send_tail(request, tail, plan, live=edge.settings.live,
                                     status=request[CACHE_STATUS])
        edge.stats.sent_bytes(fill.source, sent)
        return resp
    finally:
        os.close(tail.fd)


def refused(request: web.Request, reason: str) -> None:
    """Log a request refused as malformed (the client's fault, INFO)."""
    event(
        log, "request_refused", logging.INFO, path=request.raw_path[:200], reason=reason,
        peer=request.remote,
    )


def forward_headers(request: web.Request) -> dict[str, str]:
    """The client's end-to-end request fields, for a request the cache passes through."""
    return forwarding.end_to_end(request.headers.items(), request.remote)


def _fill_headers(request: web.Request, edge: Edge) -> dict[str, str]:
    """The fields a fill for this request sends (`edge.forwarding.fill_headers`)."""
    return forwarding.fill_headers(edge.settings.mode, request.headers.items(), request.remote)
