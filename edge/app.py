"""The edge as an aiohttp application: `make_app(settings)`, for what the hit planner
(`edge.fastpath`) leaves to it.

Two modes (`EdgeSettings.mode`):

* ``appliance``: ``/s/{token}/{title}/{path}`` (signed, `vcdn.tokens`) and, with
  ``auth = "none"``, ``/v/{title}/{path}`` (`edge.routing`, the one router); objects are
  keyed by (title, path) and filled from ``/v/{title}/{path}`` upstream. Methods other
  than GET/HEAD/OPTIONS get 405.
* ``proxy``: every path maps one to one onto the upstream; GET/HEAD are cached as RFC
  9111 allows, other methods are forwarded uncached and invalidate what they touch
  (`edge.proxy`).

In both, ``/healthz`` and ``/metrics`` are the edge's own; misses are `edge.miss.serve`'s.
The engine (`Edge`, `EDGE_KEY`) lives in `edge.engine` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from edge import cachestatus
from edge.engine import CACHE_STATUS, EDGE_KEY, Edge, mark
from edge.keyredirect import key_location
from edge.keys import video_path
from edge.llhls import BadDirective, playlist_key, refused_directive
from edge.miss import refused, serve
from edge.proxy import proxy
from edge.routing import resolve
from edge.settings import EdgeSettings
from edge.store import object_key
from edge.upstream import Upstream
from vcdn.errors import BadToken, ClientError, NotFound, UpstreamError, UpstreamTimeout, VcdnError
from vcdn.httpserve.cors import RESPONSE_HEADERS, preflight_headers
from vcdn.httpserve.middleware import error_response
from vcdn.httpserve.wire import SERVER
from vcdn.logs import event
from vcdn.metrics import REGISTRY_KEY, metrics_handler

__all__ = ["CACHE_STATUS", "EDGE_KEY", "Edge", "make_app", "serve"]
log = logging.getLogger("vcdn.edge")
APPLIANCE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


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
            mark(request, "miss", detail="upstream-failed")
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
        return await proxy(request, edge)
    method = request.method
    # POST only for a ClearKey license, which is redirected to the key service below.
    if method not in APPLIANCE_METHODS and method != "POST":
        raise web.HTTPMethodNotAllowed(method, sorted(APPLIANCE_METHODS))
    # The query of a video URL is neither part of the key nor sent upstream (edge.keys).
    try:
        route = resolve(request.raw_path.partition("?")[0], edge.keys, edge.settings.auth,
                        time.time(), verify=method != "OPTIONS")
    except NotFound:
        raise web.HTTPNotFound() from None
    if method == "OPTIONS":
        return web.Response(status=204, headers=dict(preflight_headers(request.headers)))
    title, rest = route.title, route.rest
    if route.signed and (
        location := key_location(edge.settings.key_service, route.token, title, rest)
    ):
        return web.Response(status=307, headers={
            "Location": location, "Cache-Control": "no-store", **dict(RESPONSE_HEADERS)})
    if method == "POST":
        raise web.HTTPMethodNotAllowed(method, sorted(APPLIANCE_METHODS))
    try:
        path = video_path(rest)
    except ClientError as exc:
        refused(request, str(exc))
        raise
    # LL-HLS blocking playlist requests are keyed with their directives (edge.llhls).
    try:
        key, target = playlist_key(
            object_key(title, path), edge.video_target(title, path), path, request.query_string
        )
    except BadDirective as exc:
        return refused_directive(exc)
    return await serve(request, edge, key=key, title=title, path=path, target=target,
                       catalog=route.signed)
