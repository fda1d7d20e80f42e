"""The origin content server's aiohttp application.

Routes: ``GET/HEAD/OPTIONS /v/{title}/{path}`` (files under the root, ranges and
conditionals by `vcdn.httpserve`; ``/v/{title}/manifest.json`` is the title inventory
appliances fill from), ``GET /healthz``, ``GET /metrics``. Other methods on content get
405 with ``Allow``.

The path is taken from the raw request target, not from aiohttp's decoded and normalised
match: `safe_relpath` must see ``%2e%2e`` as the client sent it.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from origin.content.catalog import Catalog
from origin.content.hotpath import OriginHot, read_whole
from origin.content.ingest import handle_put
from origin.content.live import LiveTitles
from origin.content.llserve import LowLatency
from origin.content.metrics import OriginMetrics
from origin.content.settings import OriginSettings
from vcdn.errors import NotFound
from vcdn.httpserve.cors import ALLOWED_METHODS, preflight_headers
from vcdn.httpserve.hit import Answer
from vcdn.httpserve.hot import HotCache
from vcdn.httpserve.media import IMMUTABLE, cache_control, media_type
from vcdn.httpserve.middleware import error_middleware
from vcdn.httpserve.paths import open_under, safe_relpath
from vcdn.httpserve.send import send_file
from vcdn.httpserve.validators import parse_etag, parse_etag_list, weak_match
from vcdn.metrics import REGISTRY_KEY, metrics_handler, new_registry

PREFIX: Final = "/v/"
SETTINGS_KEY: Final = web.AppKey("origin_settings", OriginSettings)
CATALOG_KEY: Final = web.AppKey("origin_catalog", Catalog)
ROOT_KEY: Final = web.AppKey("origin_root", str)
ROOT_PATH_KEY: Final = web.AppKey("origin_root_path", Path)
ROOT_FD_KEY: Final = web.AppKey("origin_root_fd", int)
METRICS_KEY: Final = web.AppKey("origin_metrics", OriginMetrics)
HOT_KEY: Final = web.AppKey("origin_hot", OriginHot)
LIVE_KEY: Final = web.AppKey("origin_live", LiveTitles)
LL_KEY: Final = web.AppKey("origin_ll", LowLatency)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def content_path(raw_path: str) -> tuple[str, str]:
    """``/v/{title}/{path}?q`` (raw) → (title, path inside the title), validated."""
    target = raw_path.partition("?")[0]
    if target[:8].lower().startswith(("http://", "https://")):
        # RFC 9112 §3.2.2: servers accept the absolute form; the path follows the authority.
        rest = target.partition("://")[2]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith(PREFIX):
        raise NotFound("Content lives under /v/{title}/{path}.")
    rel = safe_relpath(target[len(PREFIX) :])
    title, slash, inner = rel.partition("/")
    if not slash:
        raise NotFound(f"No file named in {target!r}; use /v/{{title}}/{{path}}.")
    return title, inner


async def serve_content(request: web.Request) -> web.StreamResponse:
    title, inner = content_path(request.raw_path)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=dict(preflight_headers(request.headers)))
    app = request.app
    live = app[LIVE_KEY].is_live(title)
    if live and (ll := app[LL_KEY].title(title)) is not None:
        # Low-latency playlists and parts (`origin.content.llserve`).
        answer = await app[LL_KEY].serve(request, ll, inner)
        if answer is not None:
            return answer
    try:
        fd = open_under(app[ROOT_PATH_KEY], app[ROOT_FD_KEY], f"{title}/{inner}")
    except NotFound:
        # A live event's next segment, asked for a moment early: wait (bounded) for it.
        if not live or not await app[LIVE_KEY].wait_for_segment(title, inner):
            raise
        fd = open_under(app[ROOT_PATH_KEY], app[ROOT_FD_KEY], f"{title}/{inner}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"No such file: /v/{title}/{inner}.")
        etag = app[CATALOG_KEY].etag(title, inner, st)
        ctype, cc = media_type(inner), cache_control(inner, live=live)
        hot = app[HOT_KEY]
        if live and cc != IMMUTABLE:
            # A live playlist changes every segment: always from disk, never from RAM.
            held = 0.0
            if _revalidates(request, etag):
                # A cache holding the newest version: answer with the next one.
                started = time.monotonic()
                if await app[LIVE_KEY].wait_for_version(title, inner):
                    fd, st, etag = _reopen(app, title, inner, fd)
                held = time.monotonic() - started
            cc = app[LIVE_KEY].playlist_cache_control(title, inner, held) or cc
        elif hot.eligible(request):
            # Small: read whole and kept in RAM; large: remembered where it is. Either way
            # answered by the same pipeline as its hits (`vcdn.httpserve.hit`).
            body = read_whole(fd, st.st_size) if hot.in_ram(request, st.st_size) else None
            entry = hot.remember(request, title, inner, st, body, etag=etag,
                                 content_type=ctype, cache_control=cc)
            sent = await hot.send(request, entry)
            if sent is not None:
                return sent
        resp = await send_file(
            request,
            fd,
            size=st.st_size,
            etag=etag,
            last_modified=st.st_mtime,
            content_type=ctype,
            cache_control=cc,
        )
    finally:
        os.close(fd)
    return resp


def _revalidates(request: web.Request, etag: str) -> bool:
    """Whether the request is a revalidation of exactly this version (its If-None-Match
    names our current ETag), i.e. the asker already has it."""
    header = request.headers.get("If-None-Match")
    ours = parse_etag(etag)
    tags = parse_etag_list(header) if header else None
    return ours is not None and isinstance(tags, tuple) and any(weak_match(t, ours) for t in tags)


def _reopen(
    app: web.Application, title: str, inner: str, fd: int
) -> tuple[int, os.stat_result, str]:
    """The file's newest version in place of `fd` (closed): fd, stat and ETag."""
    newer = open_under(app[ROOT_PATH_KEY], app[ROOT_FD_KEY], f"{title}/{inner}")
    os.close(fd)
    st = os.fstat(newer)
    return newer, st, app[CATALOG_KEY].etag(title, inner, st)


async def ingest_content(request: web.Request) -> web.StreamResponse:
    """``PUT``: a live pipeline publishing (`origin.content.ingest`)."""
    title, inner = content_path(request.raw_path)
    settings = request.app[SETTINGS_KEY]
    return await handle_put(
        request, title, inner, request.app[LIVE_KEY], settings.ingest_token_sha256,
        settings.max_ingest_bytes, request.app[LL_KEY],
    )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    if request.path.startswith(PREFIX):  # content only: scrapes and probes are not traffic
        status = resp.status
        body = resp.content_length or 0
        has_body = request.method != "HEAD" and (status == 200 or status == 206)
        request.app[METRICS_KEY].count(status, body if has_body else 0)
    return resp


async def healthz(request: web.Request) -> web.Response:
    ok = stat.S_ISDIR(os.stat(request.app[ROOT_KEY]).st_mode)
    return web.json_response({"status": "ok" if ok else "root_missing"}, status=200 if ok else 503)


async def _root_fd(app: web.Application) -> AsyncIterator[None]:
    """An fd of the root, the anchor of every open (see `open_under`)."""
    fd = os.open(app[ROOT_KEY], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    app[ROOT_FD_KEY] = fd
    app[HOT_KEY].root_fd = fd
    yield
    app[HOT_KEY].root_fd = -1
    app[HOT_KEY].cache.clear()
    os.close(fd)


def make_app(settings: OriginSettings) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, error_middleware])
    root = os.path.realpath(settings.root)
    app[SETTINGS_KEY] = settings
    app[ROOT_KEY] = root
    app[ROOT_PATH_KEY] = Path(root)
    app[CATALOG_KEY] = Catalog(Path(root))
    registry = new_registry()
    app[REGISTRY_KEY] = registry
    app[METRICS_KEY] = OriginMetrics(registry)
    app[HOT_KEY] = OriginHot(
        HotCache(settings.hot_capacity, settings.hot_object_max), Path(root), app[CATALOG_KEY],
        app[METRICS_KEY],
    )
    app[LIVE_KEY] = LiveTitles(Path(root), settings.live_grace)
    app[LL_KEY] = LowLatency(app[LIVE_KEY], settings.max_ingest_bytes)
    app.cleanup_ctx.append(_root_fd)
    for method in ALLOWED_METHODS.split(", "):
        app.router.add_route(method, "/v/{tail:.*}", serve_content)
    app.router.add_route("PUT", "/v/{tail:.*}", ingest_content)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app


def hit_answer(app: web.Application) -> Answer:
    """The origin's hits (hot files, `origin.content.hotpath`) for `vcdn.httpserve.server`:
    answered by the hit connection protocol and before routing, counted in the same
    metrics as the normal path."""
    return app[HOT_KEY].answer
