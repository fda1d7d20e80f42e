"""The one set of listener defences every vcdn HTTP server runs with.

A server that an anonymous client can reach must bound what one client can hold: memory
(request heads and bodies), time (a head or body dribbled a byte at a time), and slots
(connections, idle keep-alive). aiohttp's defaults bound little of it (keep-alive 3630 s,
no connection cap, ~800 KB heads, streamed bodies unbounded), so each service's settings
dataclass inherits `HttpLimits` and its runner goes through `install`:

* a request head over ``max_header_bytes`` (request line plus field lines) or with more
  than ``max_headers`` fields → 431 (RFC 6585 §5), also when aiohttp's parser trips first;
* a body announced or grown past ``max_body_bytes`` → 413 (RFC 9110 §15.5.14); routes
  may set a smaller limit with `read_limited`;
* a head not complete ``header_timeout`` seconds after its first byte → 408 and close;
  a body not complete ``body_timeout`` seconds after its head → 408 and close, so that
  dribbling uploads cannot hold server slots or upstream connections for ever;
* an idle keep-alive connection is closed after ``keepalive_timeout``;
* connections beyond ``max_connections`` are closed as soon as they are accepted.

The checks sit around ``server.request_handler``, outside any fast path installed on the
same server, so hits answered before routing are bounded the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from vcdn.errors import ClientError
from vcdn.httpserve.middleware import error_response
from vcdn.logs import event
from vcdn.settings import Bytes

log = logging.getLogger("vcdn.httplimits")

#: aiohttp's parser holds a whole field in memory before we see it; a field is never
#: allowed to be longer than this even under a larger whole-head limit.
FIELD_CAP: Final = 8190
_TIMEOUT_BODY: Final = (
    b'{"error": "request_timeout", "detail": "The request head came too slowly."}'
)
HEAD_TIMEOUT_RESPONSE: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class PayloadTooLarge(ClientError):
    """The request body is larger than this server accepts."""

    status_hint = 413


class BodyTimeout(ClientError):
    """The request body did not arrive within the body timeout."""

    status_hint = 408


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    """Listener limits; every service's settings dataclass inherits these fields."""

    #: Request line plus all field lines, in bytes; more → 431.
    max_header_bytes: Bytes = 16 * 1024
    #: Header fields per request; more → 431.
    max_headers: int = 100
    #: Request body bytes; more → 413. Routes may accept less (`read_limited`).
    max_body_bytes: Bytes = 16 * 1024**2
    #: Seconds from a head's first byte to its end; later → 408 and close.
    header_timeout: float = 10.0
    #: Seconds from the end of a head to the end of its body; later → 408 and close.
    body_timeout: float = 60.0
    #: Seconds an idle keep-alive connection stays open.
    keepalive_timeout: float = 20.0
    #: Open connections; more are closed at once.
    max_connections: int = 10000

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be at least 1")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"'{name}' must be a positive number of seconds")

    def http_limits(self) -> HttpLimits:
        """Just the limits, from a settings object that inherits them."""
        return HttpLimits(**{f.name: getattr(self, f.name) for f in fields(HttpLimits)})

    def runner_args(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` (aiohttp's RequestHandler)."""
        field = min(FIELD_CAP, self.max_header_bytes)
        return {
            "max_line_size": field,
            "max_field_size": field,
            "max_headers": self.max_headers,
            "keepalive_timeout": self.keepalive_timeout,
            # A body the handler did not read (an early 401/405/413) is drained this long
            # for keep-alive's sake, then the connection closes: never longer than a body
            # may take anyway.
            "lingering_time": min(10.0, self.body_timeout),
        }


def head_size(request: web.BaseRequest) -> int:
    """Bytes of the request line and field lines, as they came (CRLFs counted)."""
    size = len(request.method) + len(request.raw_path) + 12
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    return size


class LimitedHandler(RequestHandler):
    """aiohttp's connection handler, with a head deadline and 431 for its parser's limits."""

    __slots__ = ("_head_timer", "_head_waiter", "_limits")

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_waiter: object = None

    def data_received(self, data: bytes) -> None:
        # Bytes arriving while the handler waits for a request are a head in progress:
        # arm its deadline once (not per chunk, so dribbling cannot push it back).
        waiter = self._waiter
        if waiter is not None and waiter is not self._head_waiter:
            self._head_waiter = waiter
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout, self._head_expired, waiter
            )
        super().data_received(data)

    def _head_expired(self, waiter: object) -> None:
        self._head_timer = None
        if self._waiter is waiter and waiter is not None and not self._waiter.done():
            event(log, "request_rejected", logging.WARNING, reason="header_timeout",
                  seconds=self._limits.header_timeout)
            if self.transport is not None:
                self.transport.write(HEAD_TIMEOUT_RESPONSE)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        ):
            limits = self._limits
            event(log, "request_rejected", logging.WARNING, reason="header_too_large",
                  detail=str(exc)[:200])
            resp = error_response(
                431,
                "request_header_fields_too_large",
                f"The request head is too large: at most {limits.max_header_bytes} bytes, "
                f"{limits.max_headers} fields and {min(FIELD_CAP, limits.max_header_bytes)} "
                "bytes per line are accepted.",
            )
            resp.force_close()
            return resp
        return super().handle_error(request, status, exc, message)


class LimitedServer(web.Server):
    """aiohttp's Server whose connections are `LimitedHandler`s."""

    limits: HttpLimits

    def __call__(self) -> RequestHandler:
        return LimitedHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def install(server: web.Server, limits: HttpLimits) -> None:
    """Put `limits` on `server`: call after ``runner.setup()`` and after any fast path is
    installed, before the site starts (aiohttp's handlers copy the request handler)."""
    server.__class__ = LimitedServer
    assert isinstance(server, LimitedServer)
    server.limits = limits
    cap_connections(server, limits.max_connections)
    inner: Handler = server.request_handler
    max_head = limits.max_header_bytes
    max_body = limits.max_body_bytes
    body_timeout = limits.body_timeout

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        size = head_size(request)
        if size > max_head:
            event(log, "request_rejected", logging.WARNING, reason="header_too_large", bytes=size)
            resp = error_response(
                431,
                "request_header_fields_too_large",
                f"The request head is {size} bytes; this server accepts at most {max_head}.",
            )
            resp.force_close()
            return resp
        if not request.body_exists:
            return await inner(request)
        length = request.content_length
        if length is not None and length > max_body:
            event(log, "request_rejected", logging.WARNING, reason="body_too_large", bytes=length)
            resp = error_response(
                413,
                "payload_too_large",
                f"The body is {length} bytes; this server accepts at most {max_body}.",
            )
            resp.force_close()
            return resp
        request._client_max_size = min(request.client_max_size, max_body)  # read()/json()
        return await _with_body_deadline(request, inner, body_timeout)

    server.request_handler = handler


async def _with_body_deadline(
    request: web.BaseRequest, inner: Handler, seconds: float
) -> web.StreamResponse:
    """Run `inner`; if the body is still incomplete after `seconds`, fail its readers
    (which ends an upload streamed on upstream) and answer 408 with the connection closed."""
    content = request.content

    def expire() -> None:
        if not content.is_eof():
            event(log, "request_rejected", logging.WARNING, reason="body_timeout",
                  seconds=seconds, received=content.total_bytes, path=request.path)
            content.set_exception(BodyTimeout(f"The body did not arrive within {seconds:g} s."))

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    failure: BaseException | None = None
    try:
        resp = await inner(request)
    except (BodyTimeout, PayloadTooLarge) as exc:
        failure = exc
    except Exception:
        if not isinstance(content.exception(), BodyTimeout | PayloadTooLarge):
            raise
    finally:
        timer.cancel()
    # A limit that tripped while the body was streamed on (to an upstream) reaches the
    # handler as that stream's failure; the client still learns the real reason.
    failure = failure or content.exception()
    if isinstance(failure, BodyTimeout | PayloadTooLarge):
        code = "request_timeout" if isinstance(failure, BodyTimeout) else "payload_too_large"
        resp = error_response(failure.status_hint, code, str(failure))
        resp.force_close()
    return resp


async def read_limited(request: web.BaseRequest, limit: int) -> AsyncIterator[bytes]:
    """The body in chunks, raising `PayloadTooLarge` (413) once it passes `limit` bytes;
    for handlers that stream a body on (the edge's proxy mode) or want a smaller limit."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"The body is {request.content_length} bytes; the limit is {limit}."
        )
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            exc = PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
            request.content.set_exception(exc)  # seen by the listener's answer
            raise exc
        yield chunk


def cap_connections(server: web.Server, limit: int) -> None:
    """Close connections accepted beyond `limit` open ones."""
    accept = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        accept(handler, transport)
        if len(server.connections) > limit:
            event(log, "connection_refused", logging.WARNING, reason="max_connections", limit=limit)
            transport.close()

    server.connection_made = connection_made  # type: ignore[method-assign]
