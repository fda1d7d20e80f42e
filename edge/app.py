"""The edge as an aiohttp application: `make_app(settings)`.

Two modes (`EdgeSettings.mode`):

* ``appliance``: ``/s/{token}/{title}/{path}`` (signed, `vcdn.tokens`) and, with
  ``auth = "none"``, ``/v/{title}/{path}``; objects are keyed by (title, path) and filled
  from ``/v/{title}/{path}`` upstream. Methods other than GET/HEAD/OPTIONS get 405.
* ``proxy``: every path maps one to one onto the upstream; GET/HEAD are cached as RFC
  9111 allows, other methods are forwarded uncached and invalidate what they touch.

In both, ``/healthz`` and ``/metrics`` are the edge's own. One catch-all route dispatches
on the path prefix itself, so a hit costs one dict lookup, not a router walk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import aiohttp
from aiohttp import web
from yarl import URL

from edge import cachestatus, forwarding, freshness, targeted, vary
from edge.fill import VIA, FillFailed, Fills, Pass, Tail
from edge.keyredirect import key_location
from edge.keys import proxy_target, video_path
from edge.llcrowd import Crowds
from edge.llhls import (
    BadDirective,
    blocking_key,
    playlist_key,
    refused_directive,
    shared_refusal,
)
from edge.llstream import send_growing, streams
from edge.negative import BODY_MAX, Negative, NegativeCache
from edge.policies import make_policy
from edge.serve import RamCache, plan_for, relay, send_hit, send_tail
from edge.settings import EdgeSettings
from edge.stats import EdgeStats
from edge.store import CacheStore, Entry, object_key
from edge.upstream import IDEMPOTENT, HttpUpstream, Tuning, Upstream, UpstreamChain
from vcdn import peering, tokens
from vcdn.errors import BadToken, ClientError, UpstreamError, UpstreamTimeout, VcdnError
from vcdn.httplimits import read_limited
from vcdn.httpserve import media
from vcdn.httpserve.cors import RESPONSE_HEADERS, preflight_headers
from vcdn.httpserve.middleware import error_response
from vcdn.httpserve.wire import SERVER
from vcdn.logs import event
from vcdn.metrics import REGISTRY_KEY, metrics_handler, new_registry
from vcdn.titles import is_valid_title

log = logging.getLogger("vcdn.edge")
T = TypeVar("T")

APPLIANCE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
FLUSH_EVERY: Final = 5.0
#: Proxy mode: request bodies up to this size are buffered before forwarding.
SMALL_BODY: Final = 64 * 1024


class Edge:
    """The in-process API of one edge worker; the appliance daemon drives it directly.

    ``store`` (`CacheStore`: import_file, has, pin_title, purge, stats), ``stats``
    (`EdgeStats`: hit_ratio, sent, take_title_requests()), ``draining`` (keep serving,
    but the appliance tells steering to send no new clients).
    """

    def __init__(self, settings: EdgeSettings, store: CacheStore | None = None) -> None:
        self.settings = settings
        self.store = store or CacheStore(
            settings.cache_dir, settings.capacity, make_policy(settings.eviction)
        )
        self.keys = settings.keys()
        self.registry = new_registry()
        self.stats = EdgeStats(self.registry, self.store)
        self.ram = RamCache(settings.ram_cache, settings.ram_object_max)
        self.draining = False
        #: The fast path's memory of appliance URLs: raw target → (key, title, valid until).
        #: Per Edge, since what a URL may reach depends on this edge's keys and auth.
        self.fast_routes: dict[str, tuple[str, str, float]] = {}
        self.negative = NegativeCache()
        #: The store's purge generation this worker's memory is consistent with.
        self._generation = self.store.generation.read()
        self._purges = self.store.generation.purges()
        #: Whole fills started behind a range pass-through (kept so they are not lost).
        self.background: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store")
        self.session: aiohttp.ClientSession | None = None
        self.chain: UpstreamChain | None = None
        self.fills: Fills | None = None
        #: Players blocking on the same LL-HLS playlist request, answered at once.
        self.crowds = Crowds(self)

    def check_purges(self) -> None:
        """Before answering anything: if some process purged or invalidated objects since
        we last looked (`edge.generation`), drop what this worker holds beyond the index:
        RAM copies, kept error answers, and fills a new request could still join."""
        current = self.store.generation.read()
        if current != self._generation:
            self._generation = current
            purges, self._purges = self._purges, self.store.generation.purges()
            self.ram.clear()
            self.negative.clear()
            if self.fills is not None:
                self.fills.detach(purge=purges != self._purges)

    def set_keys(self, keys: tokens.KeyRing) -> None:
        """New signing keys (a reload): forget the fast path's verified URLs with the old."""
        self.keys = keys
        self.fast_routes.clear()

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call on the store's own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    async def start(self, upstreams: list[Upstream] | None = None) -> None:
        s = self.settings
        if upstreams is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
            tuning = Tuning(
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
                retries=s.retries,
                breaker_threshold=s.breaker_threshold,
                breaker_reset=s.breaker_reset,
                retry_answers=s.mode == "appliance",
            )
            peer_tuning = Tuning(
                connect_timeout=min(0.5, s.connect_timeout),
                read_timeout=s.read_timeout,
                retries=0,
                breaker_threshold=s.breaker_threshold,
                breaker_reset=s.breaker_reset,
            )
            upstreams = [
                *(HttpUpstream(p, self.session, kind="peer", tuning=peer_tuning) for p in s.peers),
                HttpUpstream(s.upstream, self.session, kind="origin", tuning=tuning),
            ]
        self.chain = UpstreamChain(upstreams)
        self.fills = Fills(
            self.store,
            self.chain,
            run=self.run,
            content_type=media.media_type,
            on_fill=self.stats.filled,
        )
        await self.run(self.store.load if len(self.store.policy) == 0 else self.store.sync)

    async def stop(self) -> None:
        await self.crowds.close()
        if self.fills is not None:
            await self.fills.close()
        if self.session is not None:
            await self.session.close()
        await self.run(self.store.flush_access)
        self._executor.shutdown(wait=True)

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.run(self.store.flush_access)

    # --- targets -----------------------------------------------------------------------

    def video_target(self, title: str, path: str) -> Callable[[Upstream], str]:
        origin_path = peering.origin_target(title, path)

        def target(up: Upstream) -> str:
            if up.kind == "peer":
                return peering.target(self.keys, title, path, time.time())
            return origin_path

        return target


EDGE_KEY: Final = web.AppKey("vcdn_edge", Edge)
#: This edge's Cache-Status entry for the answer (RFC 9211), set where the outcome is
#: decided and added to the head by `_add_cache_status`.
CACHE_STATUS: Final = web.RequestKey("vcdn_cache_status", str)


def make_app(
    settings: EdgeSettings, *, edge: Edge | None = None, upstreams: list[Upstream] | None = None
) -> web.Application:
    """The edge application. `edge` lets the appliance share its `Edge`; `upstreams`
    replaces the HTTP upstreams (unit tests)."""
    app = web.Application(middlewares=[_errors_middleware])
    the_edge = edge or Edge(settings)
    app[EDGE_KEY] = the_edge
    app[REGISTRY_KEY] = the_edge.stats.scrape

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await the_edge.start(upstreams)
        flusher = asyncio.create_task(the_edge.flush_loop())
        yield
        flusher.cancel()
        await the_edge.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(_add_cache_status)
    app.on_response_prepare.append(_server_field)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


async def _server_field(_request: web.Request, response: web.StreamResponse) -> None:
    """Every answer aiohttp writes (misses, tails, relays, errors) names us as the fast
    hits do (`vcdn.httpserve.wire.SERVER`), never aiohttp's version string."""
    response.headers["Server"] = SERVER


async def _add_cache_status(request: web.Request, response: web.StreamResponse) -> None:
    ours = request.get(CACHE_STATUS)
    if ours is not None:
        prior = response.headers.get("Cache-Status")
        response.headers["Cache-Status"] = cachestatus.append(prior, ours)


def _status(request: web.Request, result: str, **kw: Any) -> None:
    request[CACHE_STATUS] = cachestatus.value(result, **kw)


@web.middleware
async def _errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    # Head and body limits are the listener's (`vcdn.httplimits`), before any routing.
    try:
        return await handler(request)
    except BadToken as exc:
        return _denied(request, str(exc))
    except UpstreamError as exc:
        request.app[EDGE_KEY].stats.request("error")
        if CACHE_STATUS not in request:
            _status(request, "miss", detail="upstream-failed")
        status = 504 if isinstance(exc, UpstreamTimeout) else 502
        event(log, "upstream_failed", logging.WARNING, path=request.path, error=str(exc))
        return error_response(status, "upstream_failed", str(exc))
    except VcdnError as exc:
        if exc.status_hint >= 500:
            event(log, "request_failed", logging.ERROR, path=request.path, error=str(exc))
        return error_response(exc.status_hint, type(exc).__name__, str(exc))


def _denied(request: web.Request, reason: str) -> web.Response:
    """403 with an empty body; the reason goes to the log only (no oracle for forgers)."""
    request.app[EDGE_KEY].stats.request("denied")
    event(
        log, "token_rejected", logging.INFO, path=request.path, reason=reason, peer=request.remote
    )
    resp = web.Response(status=403, body=b"")
    resp.headers.update(dict(RESPONSE_HEADERS))
    return resp


async def _healthz(request: web.Request) -> web.Response:
    edge = request.app[EDGE_KEY]
    s = edge.store.stats()
    return web.json_response(
        {
            "ok": True,
            "draining": edge.draining,
            "objects": s.objects,
            "bytes_used": s.bytes_used,
            "capacity": s.capacity,
        }
    )


async def _dispatch(request: web.Request) -> web.StreamResponse:
    edge = request.app[EDGE_KEY]
    if edge.settings.mode == "proxy":
        return await _proxy(request, edge)
    # POST only for a ClearKey license, which is redirected to the key service below.
    if request.method not in APPLIANCE_METHODS and request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, sorted(APPLIANCE_METHODS))
    # The query of a video URL is neither part of the key nor sent upstream (edge.keys).
    raw = request.raw_path.partition("?")[0]
    parts = raw.split("/", 4)
    if len(parts) == 5 and parts[1] == "s":
        _, _, token, title, rest = parts
        _check_title(title)
        if request.method != "OPTIONS":
            tokens.verify(token, title, edge.keys, time.time())
        signed = True
    elif len(parts) >= 4 and parts[1] == "v" and edge.settings.auth == "none":
        _, _, title, rest = raw.split("/", 3)
        _check_title(title)
        signed, token = False, ""
    else:
        raise web.HTTPNotFound()
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=dict(preflight_headers(request.headers)))
    if signed and (location := key_location(edge.settings.key_service, token, title, rest)):
        return web.Response(status=307, headers={
            "Location": location, "Cache-Control": "no-store", **dict(RESPONSE_HEADERS)})
    if request.method == "POST":
        raise web.HTTPMethodNotAllowed(request.method, sorted(APPLIANCE_METHODS))
    try:
        path = video_path(rest)
    except ClientError as exc:
        _refused(request, str(exc))
        raise
    # LL-HLS blocking playlist requests are keyed with their directives (edge.llhls).
    try:
        key, target = playlist_key(
            object_key(title, path), edge.video_target(title, path), path, request.query_string
        )
    except BadDirective as exc:
        return refused_directive(exc)
    return await serve(
        request,
        edge,
        key=key,
        title=title,
        path=path,
        target=target,
        # A valid token is steering's word that the title is in the catalog.
        catalog=signed,
    )


def _refused(request: web.Request, reason: str) -> None:
    event(
        log, "request_refused", logging.INFO, path=request.raw_path[:200], reason=reason,
        peer=request.remote,
    )


def _check_title(title: str) -> None:
    if not is_valid_title(title):
        raise web.HTTPNotFound()


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
    sent = _fill_headers(request, edge) or {"Via": VIA}
    filling = edge.fills.inflight(key)
    if filling is not None and filling.draft is not None and not _shareable(
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
        entry = edge.store.peek(key) or _variant(edge, key, sent)
    stale: Entry | None = None
    usable_on_error = False
    if entry is not None:
        age = freshness.current_age(entry.initial_age, entry.response_time, time.time())
        verdict = freshness.judge(_policy(entry), age, request.headers)
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
        _status(request, "none", detail="only-if-cached")
        return error_response(504, "not_cached", "Not in this cache (only-if-cached).")
    if stale is None:
        negative = edge.negative.get(key, time.time())
        if negative is not None:
            stats.request("negative", title)
            _status(request, "negative")
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
    if isinstance(chosen, Entry) and not _selects(chosen, sent):
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
        _status(request, "miss", had_stale=stale is not None, stored=True)
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
            _status(request, "miss", fwd_status=kept.status, stored=True)
            return _negative_response(request, kept)
    stats.request("pass", title)
    if isinstance(outcome, Pass):
        _status(request, "pass", had_stale=stale is not None, fwd_status=outcome.response.status)
        resp, sent = await relay(request, outcome.response)
        stats.sent_bytes(outcome.response.source, sent)
        return resp
    # The fill turned out not storable and another waiter took its response: ask ourselves,
    # unless it is keeping the refusal of a blocking playlist request (edge.llhls).
    if blocking_key(key) and (kept := await shared_refusal(edge.negative, key)) is not None:
        stats.request("negative", title)
        return _negative_response(request, kept)
    assert edge.chain is not None
    up = await edge.chain.fetch("GET", target, _forward_headers(request))
    _status(request, "pass", fwd_status=up.status)
    resp, sent = await relay(request, up)
    stats.sent_bytes(up.source, sent)
    return resp


def _blocking_answered(edge: Edge, arrived: float) -> None:
    edge.stats.blocking_renders.inc()
    edge.stats.blocking_answer.observe(max(0.0, time.time() - arrived))


async def _keep_negative(
    edge: Edge, key: str, request: web.Request, up: Any
) -> Negative | None:
    """Keep an error answer the upstream allows a cache to keep (edge.negative), or None
    (the caller relays `up`, still unread)."""
    lifetime = freshness.negative_lifetime(
        up.status, request.headers, up.headers, up.response_time, edge.settings.negative_ttl
    )
    length = up.headers.get("Content-Length", "")
    if lifetime <= 0 or not length.isdigit() or int(length) > BODY_MAX:
        return None
    body = await up.read(BODY_MAX)
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
    headers = dict(fill_headers or {"Via": VIA})
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
    _status(request, "range", fwd_status=up.status)
    event(log, "range_passed", key=key, status=up.status)
    resp, sent = await relay(request, up)
    edge.stats.sent_bytes(up.source, sent)
    return resp


async def _fill_behind(
    edge: Edge,
    key: str,
    title: str,
    path: str,
    target: Callable[[Upstream], str],
    headers: dict[str, str] | None,
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


def _variant(edge: Edge, key: str, sent: dict[str, str]) -> Entry | None:
    """The stored Vary variant of `key` that answers a request whose fill would send
    `sent` (edge.vary); the most recent one if several do (§4.1)."""
    found = [e for e in edge.store.variants(key) if _selects(e, sent)]
    return max(found, key=lambda e: e.response_time) if found else None


def _selects(entry: Entry, sent: dict[str, str]) -> bool:
    values = [v for n, v in entry.headers if n.lower() == "vary"]
    return vary.selects(entry.key, ", ".join(values) or None, sent)


def _shareable(draft: Entry, request: web.Request, sent: dict[str, str]) -> bool:
    """May the fill in flight with head `draft` also answer `request`? Concurrent
    requests share a fill (collapsed forwarding) unless the response says it may not
    answer this one unasked: another Vary variant, no-cache, an explicit lifetime
    already spent, or the request's own directives. A response with no freshness
    information is shared with those who arrive while it streams, as before."""
    if not _selects(draft, sent):
        return False
    pol = _policy(draft)
    if not freshness.explicit(_fields(draft)):
        pol = dataclasses.replace(pol, lifetime=math.inf)
    age = freshness.current_age(draft.initial_age, draft.response_time, time.time())
    return freshness.judge(pol, age, request.headers).fresh


def _fields(entry: Entry) -> dict[str, str]:
    headers = dict(entry.headers)
    if entry.cache_control:
        headers["Cache-Control"] = entry.cache_control
    return headers


def _policy(entry: Entry) -> freshness.Policy:
    pol = freshness.policy(_fields(entry), entry.response_time)
    # The stored lifetime was computed once at fill time (Expires against Date, heuristics).
    return freshness.Policy(
        lifetime=entry.lifetime,
        no_cache=pol.no_cache,
        must_revalidate=pol.must_revalidate,
        stale_if_error=pol.stale_if_error,
        immutable=pol.immutable,
    )


async def _hit(
    request: web.Request, edge: Edge, entry: Entry, title: str, result: str,
    *, had_stale: bool = False,
) -> web.StreamResponse | None:
    _status(request, result, had_stale=had_stale, stored=result == "miss")
    done = await send_hit(
        request, entry, str(edge.store.file_path(entry)), ram=edge.ram, live=edge.settings.live
    )
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
            resp, sent = await send_growing(request, tail, live=edge.settings.live)
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
            ahead = {**(_fill_headers(request, edge) or {"Via": VIA})}
            ahead["Range"] = f"bytes={r.first}-{r.last}"
            up = await edge.chain.fetch("GET", target, ahead)
            if up.status == 206 and up.headers.get("Content-Range") == r.content_range(size):
                resp, sent = await relay(request, up)
                edge.stats.sent_bytes(up.source, sent)
                return resp
            up.close()
        resp, sent = await send_tail(request, tail, plan, live=edge.settings.live)
        edge.stats.sent_bytes(fill.source, sent)
        return resp
    finally:
        os.close(tail.fd)


def _forward_headers(request: web.Request) -> dict[str, str]:
    """The client's end-to-end request fields, for a request the cache passes through."""
    return forwarding.end_to_end(request.headers.items(), request.remote)


def _fill_headers(request: web.Request, edge: Edge) -> dict[str, str] | None:
    """Proxy mode: a fill carries its first requester's end-to-end fields (as nginx
    does), so the upstream sees what it negotiates on; appliance fills stay bare."""
    if edge.settings.mode != "proxy":
        return None
    headers = forwarding.fill_request(request.headers.items(), request.remote)
    prior = headers.get("Surrogate-Capability")
    headers["Surrogate-Capability"] = (
        f"{prior}, {targeted.CAPABILITY}" if prior else targeted.CAPABILITY
    )
    return headers


async def _proxy(request: web.Request, edge: Edge) -> web.StreamResponse:
    """Proxy mode: RFC 9111 cache for GET/HEAD, everything else forwarded (§4.4)."""
    assert edge.chain is not None
    method = request.method
    req_cc = freshness.parse_cache_control(request.headers.get("Cache-Control"))
    cacheable = (
        method in ("GET", "HEAD")
        and "Authorization" not in request.headers
        and "no-store" not in req_cc
    )
    # The key is the target sent upstream, byte for byte (edge.keys).
    try:
        raw = proxy_target(request.raw_path, edge.settings.query_policy if cacheable else "keep")
    except ClientError as exc:
        _refused(request, str(exc))
        raise

    def target(_up: Upstream) -> str:
        return raw

    if cacheable:
        return await serve(
            request, edge, key=raw, title="", path=raw.partition("?")[0], target=target
        )
    body: Any = None
    if request.body_exists:
        length = request.content_length
        small = length is not None and length <= min(SMALL_BODY, edge.settings.max_body_bytes)
        if small and method in IDEMPOTENT:
            # A small body of an idempotent request (PUT, DELETE) is read first, so it
            # can be sent again if a pooled connection closes under it; others stream.
            body = await request.read()
        else:
            body = read_limited(request, edge.settings.max_body_bytes)
    up = await edge.chain.fetch(method, target, _forward_headers(request), body, use_peers=False)
    if freshness.invalidates(method, up.status):
        for key in _invalidated(raw, up, request):
            key = proxy_target(key, edge.settings.query_policy)
            edge.negative.drop(key)
            removed = await edge.run(edge.store.remove, key)
            variants = await edge.run(edge.store.remove_variants, key)
            if removed or variants:
                event(log, "invalidated", key=key, method=method, variants=variants)
    edge.stats.request("pass")
    _status(request, "method" if method not in ("GET", "HEAD") else "bypass", fwd_status=up.status)
    resp, sent = await relay(request, up)
    edge.stats.sent_bytes(up.source, sent)
    return resp


def _invalidated(raw: str, up: Any, request: web.Request) -> list[str]:
    """§4.4: the target URI, and Location/Content-Location when on the same host."""
    keys = [raw]
    for name in ("Location", "Content-Location"):
        value = up.headers.get(name)
        if not value:
            continue
        try:
            url = request.url.join(URL(value))
        except ValueError:
            continue
        if url.host == request.url.host and url.port == request.url.port:
            keys.append(url.raw_path_qs)
    return keys
