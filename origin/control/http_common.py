"""What every handler shares: app keys, JSON in and out, the caller's identity, errors.

Errors leave handlers as `VcdnError`s and become ``{"error", "detail"}`` bodies in one
middleware, so that no handler formats an error itself and no driver exception or bug
escapes as an HTML page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

from origin.control.auth import Principal, authorize, bearer, hash_token
from origin.control.beats import HeartbeatBuffer
from origin.control.health import Liveness
from origin.control.settings import ControlSettings
from origin.control.store import Store
from origin.control.validate import check_text
from vcdn.errors import ClientError, Forbidden, PayloadTooLarge, StoreError, VcdnError
from vcdn.logs import event
from vcdn.schemas import TitleManifest, decode
from vcdn.tls import peer_identity

T = TypeVar("T")
log = logging.getLogger("vcdn.control")

Clock = Callable[[], float]
# How often a server asks the store whether any token was revoked (`token_epoch`): a
# revocation from the CLI or another control server takes effect within this; one
# through this server's API clears the cache at once.
TOKEN_CACHE_SECONDS: Final = 1.0
# How long a decision is kept however quiet the epoch: a bound on trusting the triggers.
TOKEN_CACHE_MAX_AGE: Final = 600.0
TOKEN_CACHE_MAX: Final = 200_000  # entries (a large fleet's tokens); past it, start over
JSON_TYPE: Final = "application/json"
READ_CHUNK: Final = 64 * 1024


@dataclass
class TokenCache:
    """Who each known token is, kept while no token anywhere is revoked.

    An appliance beats every 10 s; a cache of one second saved nothing, and the token
    query was the costliest part of a beat (a round trip and a PostgreSQL backend's
    work). Instead every decision stays until the store's `token_epoch` moves (any
    token deleted or changed, by anyone), which is read at most every
    `TOKEN_CACHE_SECONDS`: one query a second per server, whatever the fleet.
    """

    entries: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    epoch: int | None = None  # the store's token_epoch at the last check
    checked: float = float("-inf")  # monotonic time of that check
    generation: int = 0  # advanced by every clear: a lookup begun before it is not kept
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def clear(self) -> None:
        self.entries.clear()
        self.generation += 1

    async def check(self, store: Store) -> None:
        """Drop everything if a token was revoked since the last check (at most one
        store query per `TOKEN_CACHE_SECONDS`, shared by every request waiting)."""
        if time.monotonic() - self.checked < TOKEN_CACHE_SECONDS:
            return
        async with self.lock:
            if time.monotonic() - self.checked < TOKEN_CACHE_SECONDS:
                return  # another request checked while this one waited
            started = time.monotonic()
            epoch = await store.token_epoch()  # StoreError: no check, nothing trusted
            if epoch != self.epoch:
                self.clear()
                self.epoch = epoch
            self.checked = started

    def get(self, digest: str) -> Principal | None:
        hit = self.entries.get(digest)
        if hit is None:
            return None
        if hit[1] <= time.monotonic():
            del self.entries[digest]
            return None
        return hit[0]

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        """Keep a decision looked up while the cache was at `generation`; a lookup that
        a revocation overtook (the cache was cleared meanwhile) is not kept."""
        if generation != self.generation:
            return
        if len(self.entries) >= TOKEN_CACHE_MAX:
            self.entries.clear()
        self.entries[digest] = (principal, time.monotonic() + TOKEN_CACHE_MAX_AGE)


@dataclass
class CatalogCache:
    """The catalog as parsed manifests, reloaded when its stamp changes (another server
    wrote) or when this server registers a title (`invalidate`)."""

    stamp: tuple[int, float] = (-1, 0.0)
    titles: list[TitleManifest] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    digest: str = ""  # of what planning reads of `titles`: equal on every replica

    def invalidate(self) -> None:
        self.stamp = (-1, 0.0)


SETTINGS = web.AppKey("control_settings", ControlSettings)
CATALOG = web.AppKey("control_catalog_cache", CatalogCache)
STORE = web.AppKey("control_store", Store)  # type: ignore[type-abstract]
CLOCK = web.AppKey("control_clock", Callable[[], float])  # type: ignore[arg-type]
BOOTSTRAP = web.AppKey("control_bootstrap_tokens", dict)
TOKENS = web.AppKey("control_token_cache", TokenCache)
LIVENESS = web.AppKey("control_liveness", Liveness)
BEATS = web.AppKey("control_heartbeat_buffer", HeartbeatBuffer)

ERROR_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal",
    503: "unavailable",
}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": ERROR_CODES.get(status, "error"), "detail": detail}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except StoreError as exc:
        # Our database is unreachable or failed: the request was fine, try again later.
        event(log, "store_error", logging.ERROR, path=request.path, detail=str(exc))
        return error_response(503, str(exc), {"Retry-After": "5"})
    except VcdnError as exc:
        status = exc.status_hint if 400 <= exc.status_hint < 500 else 500
        headers = {"WWW-Authenticate": 'Bearer realm="vcdn"'} if status == 401 else None
        return error_response(status, str(exc), headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, detail or exc.reason, headers)
    except Exception:
        log.exception("unhandled_error", extra={"fields": {"path": request.path}})
        return error_response(500, "The control server hit a bug; it has been logged.")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, bounded by `max_body`; bad JSON is the client's fault."""
    return (await read_json_text(request))[0]


async def read_json_text(
    request: web.Request, *, check_strings: bool = True, limit: int | None = None
) -> tuple[Any, str]:
    """The body parsed, and as the text it came as (at most `limit` bytes, else 413).

    `check_strings=False` skips the NUL/surrogate walk for callers that store only the raw
    text (where such characters stay JSON escapes) and pattern-checked fields.
    """
    raw = await read_raw(request, limit)
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ClientError("The body is not UTF-8 text.") from None
    except RecursionError:
        raise ClientError("The body's JSON is nested too deeply.") from None
    except ValueError as exc:
        raise ClientError(f"The body is not valid JSON: {exc}.") from None
    if check_strings:
        check_text(data)
    return data, raw.decode()


async def read_raw(request: web.Request, limit: int | None = None) -> bytes:
    """The body's bytes, refused with 413 past `limit` (default `max_body`) before it
    is all read, and 400 if empty."""
    limit = request.app[SETTINGS].max_body if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {limit}.")
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ClientError("The body is empty; a JSON object is required.")
    return raw


async def read_body(request: web.Request, cls: type[T]) -> T:
    return decode(cls, await read_json(request))


def dumps(data: Any) -> bytes:
    """Compact JSON. orjson, except for strings that are not valid Unicode (a lone
    surrogate kept verbatim from a heartbeat's free text), which the standard encoder
    writes as ``\\ud800`` escapes. NaN cannot occur: every number is checked finite on
    the way in (and RFC 8259 §6 has no NaN)."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def respond(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type=JSON_TYPE)


async def caller(request: web.Request) -> Principal | None:
    """Who sent the request, or None for an unknown token; raises if there is no token."""
    token = bearer(request.headers.get("Authorization"))
    digest = hash_token(token)
    app = request.app
    found = app[BOOTSTRAP].get(digest)
    if found is not None:
        return found
    cache = app[TOKENS]
    store = app[STORE]
    await cache.check(store)
    hit = cache.get(digest)
    if hit is not None:
        return hit
    generation = cache.generation
    principal = await store.principal(digest)
    if principal is not None:
        cache.put(digest, principal, generation)
    return principal


async def require(
    request: web.Request, allowed: frozenset[str], appliance: str | None = None
) -> Principal:
    who = await caller(request)
    if who is not None and who.role == "appliance" and who.subject is None:
        event(log, "unbound_appliance_token", logging.WARNING, path=request.path,
              peer=request.remote)
    principal = authorize(who, allowed, appliance)
    if principal.role == "appliance" and request.app[SETTINGS].tls_client_ca is not None:
        check_client_certificate(request, principal)
    return principal


def check_client_certificate(request: web.Request, who: Principal) -> None:
    """Mutual TLS, the second factor beside the bound token: with `tls_client_ca` set, an
    appliance must also present a certificate from that CA whose common name is its id."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    name = peer_identity(peer)
    if name != who.subject:
        event(log, "client_certificate_refused", logging.WARNING, appliance=who.subject,
              presented=name, peer=request.remote)
        shown = "none" if name is None else f"one for {name[:64]!r}"
        raise Forbidden(
            f"Appliance {who.subject!r} must present its client certificate (common name "
            f"{who.subject!r}, from the control plane's client CA); it presented {shown}."
        )


def forget_tokens(request: web.Request) -> None:
    """A token was revoked here: no cached copy may outlive it on this server."""
    request.app[TOKENS].clear()


def query_float(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ClientError(
            f"Query parameter '{name}' must be a number, not {text[:40]!r}."
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ClientError(f"Query parameter '{name}' must be a finite number.")
    return value


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ClientError(
            f"Query parameter '{name}' must be an integer, not {text[:40]!r}."
        ) from None
    if not low <= value <= high:
        raise ClientError(f"Query parameter '{name}' must be between {low} and {high}.")
    return value


def only_query(request: web.Request, *names: str) -> None:
    """Refuse unknown query parameters: a typo (``?sice=``) must not silently mean 'all'."""
    for name in request.query:
        if name not in names:
            known = ", ".join(names)
            raise ClientError(
                f"Unknown query parameter {name[:40]!r}; this endpoint takes {known}."
            )
