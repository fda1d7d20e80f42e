"""Proxy mode (`vcdn edge --auth none` in front of any origin): RFC 9111 cache for GET and
HEAD (`edge.miss.serve`), every other method forwarded uncached, invalidating what it
touches (§4.4)."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web
from yarl import URL

from edge import freshness
from edge.engine import CACHE_STATUS, Edge, mark
from edge.keys import proxy_target
from edge.miss import forward_headers, refused, serve
from edge.serve import relay
from edge.upstream import IDEMPOTENT, Upstream
from vcdn.errors import ClientError
from vcdn.httplimits import read_limited
from vcdn.logs import event

log = logging.getLogger("vcdn.edge")
#: Request bodies up to this size are buffered before forwarding.
SMALL_BODY: Final = 64 * 1024


async def proxy(request: web.Request, edge: Edge) -> web.StreamResponse:
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
        refused(request, str(exc))
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
    up = await edge.chain.fetch(method, target, forward_headers(request), body, use_peers=False)
    if freshness.invalidates(method, up.status):
        for key in _invalidated(raw, up, request):
            key = proxy_target(key, edge.settings.query_policy)
            edge.negative.drop(key)
            removed = await edge.run(edge.store.remove, key)
            variants = await edge.run(edge.store.remove_variants, key)
            if removed or variants:
                event(log, "invalidated", key=key, method=method, variants=variants)
    edge.stats.request("pass")
    mark(request, "method" if method not in ("GET", "HEAD") else "bypass", fwd_status=up.status)
    resp, sent = await relay(request, up, request.get(CACHE_STATUS))
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
