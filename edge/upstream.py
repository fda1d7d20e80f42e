"""Where misses go: peers of the site first, then the parent or origin.

`Upstream` is the small interface the fill code sees; `HttpUpstream` is the real one
(aiohttp client, per-upstream timeout, retries with backoff, a circuit breaker) and tests
may pass any object with the same `fetch`. aiohttp's exceptions are translated here, once,
into `UpstreamTimeout` / `UpstreamError` / `CircuitOpen`.

The breaker is what lets an appliance keep serving when the origin is down: after
`threshold` consecutive failures it opens for `reset_after` seconds, during which misses
fail at once (no connect timeout per request) while hits are unaffected; then one trial
request is let through (half-open) and its outcome closes or re-opens it. Connection
failures and timeouts say the upstream is in trouble whatever was asked, so each counts;
a 5xx may be one URL's own answer, so within a run of failures each target counts once:
a client hammering one failing URL never opens the breaker for everybody else.

Targets are sent exactly as given (``encoded=True``): the HTTP client must not normalise
``/a/../b`` or ``%41``, or the cache would key one thing and fetch another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from vcdn import backoff, peering
from vcdn.errors import CircuitOpen, UpstreamError, UpstreamTimeout
from vcdn.logs import event

log = logging.getLogger("vcdn.edge.upstream")

Kind = Literal["peer", "origin"]
#: Statuses that say the upstream (not the request) is in trouble: retry and count them.
RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamResponse:
    """An upstream's answer: status and headers now, the body as it arrives."""

    __slots__ = ("_resp", "headers", "name", "request_time", "response_time", "source", "status")

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str] | CIMultiDict[str],
        *,
        source: Kind,
        name: str,
        request_time: float,
        response_time: float,
        resp: aiohttp.ClientResponse | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.source = source
        self.name = name
        self.request_time = request_time
        self.response_time = response_time
        self._resp = resp

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError/UpstreamTimeout when it breaks."""
        if self._resp is None:
            return
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"{self.name} stalled while sending the body.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self.name} broke off the body: {exc}.") from exc
        finally:
            self.close()

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise UpstreamError(f"{self.name} sent more than {limit} bytes.")
        return bytes(out)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.release()
            self._resp = None


class Upstream(Protocol):
    name: str
    kind: Kind

    async def fetch(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes] | bytes | None = None,
    ) -> UpstreamResponse: ...


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after `reset_after`.

    `failure(target)` is an answer-level failure (a 5xx) and counts once per distinct
    target in the current run; `failure()` (connection refused, timeout) always counts.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_targets",
        "_trial",
        "reset_after",
        "threshold",
    )

    def __init__(
        self,
        threshold: int = 5,
        reset_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._targets: set[str] = set()

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.reset_after else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True  # exactly one trial request
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False
        if self._targets:
            self._targets.clear()

    def failure(self, target: str | None = None) -> None:
        self._trial = False
        if self._opened_at is not None:
            self._opened_at = self._clock()  # a failed trial (or a late one) re-opens
            return
        if target is not None:
            if target in self._targets:
                return  # the same URL failing again says nothing new about the upstream
            if len(self._targets) < self.threshold:
                self._targets.add(target)
        self._failures += 1
        if self._failures >= self.threshold:
            self._opened_at = self._clock()


@dataclass(frozen=True, slots=True)
class Tuning:
    """Per-upstream timeouts and retry schedule (seconds)."""

    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.05
    backoff_cap: float = 1.0
    breaker_threshold: int = 5
    breaker_reset: float = 5.0
    #: Whether one request's failures (a 5xx answer, a connection dropped after the
    #: request went out) are asked again. A parent tier in front of any origin (proxy
    #: mode) says False: that is the origin's answer to that request, and asking again
    #: would repeat a request its client made once (nginx's proxy_next_upstream default
    #: is the same: only connection errors and timeouts). Either way they count, once
    #: per target, against the breaker.
    retry_answers: bool = True


class HttpUpstream:
    """One HTTP upstream (a peer appliance, a parent edge or the origin)."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, *, kind: Kind, tuning: Tuning
    ) -> None:
        self.base = base_url.rstrip("/")
        self.name = self.base
        self.kind: Kind = kind
        self.session = session
        self.tuning = tuning
        self.breaker = CircuitBreaker(tuning.breaker_threshold, tuning.breaker_reset)
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=tuning.connect_timeout,
            sock_connect=tuning.connect_timeout,
            sock_read=tuning.read_timeout,
        )

    async def fetch(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: AsyncIterator[bytes] | bytes | None = None,
    ) -> UpstreamResponse:
        if not self.breaker.allow():
            raise CircuitOpen(f"{self.name} failed repeatedly; not asking it for a while.")
        idempotent = method in IDEMPOTENT and not _is_stream(body)
        retries = self.tuning.retries if idempotent else 0
        attempt = 0
        raced = False
        while True:
            request_time = time.time()
            try:
                resp = await self.session.request(
                    method,
                    URL(self.base + target, encoded=True),
                    headers=dict(headers),
                    data=body,
                    allow_redirects=False,
                    timeout=self._timeout,
                    auto_decompress=False,
                )
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                error: UpstreamError = UpstreamTimeout(f"{self.name} did not answer in time.")
                error.__cause__ = exc
                failed_target: str | None = None
            except aiohttp.ClientConnectorError as exc:
                error = UpstreamError(f"{self.name} cannot be reached: {exc}.")
                error.__cause__ = exc
                failed_target = None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if not raced and idempotent:
                    # A pooled keep-alive connection the upstream closed as we reused it
                    # (RFC 9112 §9.3.1) is no failure of the upstream: ask once more on
                    # a new connection, at once and uncounted.
                    raced = True
                    continue
                # Connected, then dropped: this request's failure, counted per target.
                error = UpstreamError(f"{self.name} cannot be reached: {exc}.")
                error.__cause__ = exc
                failed_target = target
            except aiohttp.ClientError as exc:
                # Connected, but the answer could not be read (a malformed head): this
                # request's failure too.
                error = UpstreamError(f"{self.name} cannot be reached: {exc}.")
                error.__cause__ = exc
                failed_target = target
            else:
                answer = UpstreamResponse(
                    resp.status,
                    resp.headers,
                    source=self.kind,
                    name=self.name,
                    request_time=request_time,
                    response_time=time.time(),
                    resp=resp,
                )
                if resp.status not in RETRY_STATUSES or _deliberate(resp.headers):
                    self.breaker.success()
                    return answer
                self._failed(target, f"status {resp.status}")
                if not self._again(attempt, retries):
                    return answer
                resp.release()
                attempt += 1
                await asyncio.sleep(self._delay(attempt))
                continue
            self._failed(failed_target, str(error))
            if not self._again(attempt, retries, answer=failed_target is not None):
                raise error
            attempt += 1
            await asyncio.sleep(self._delay(attempt))

    def _again(self, attempt: int, retries: int, *, answer: bool = True) -> bool:
        """Ask once more? `answer`: the failure was this request's (a 5xx, a drop after
        connecting), retried only with `Tuning.retry_answers`."""
        if attempt >= retries or (answer and not self.tuning.retry_answers):
            return False
        return self.breaker.allow()

    def _failed(self, target: str | None, why: str) -> None:
        was_closed = self.breaker.state == "closed"
        self.breaker.failure(target)
        if was_closed and self.breaker.state != "closed":
            event(
                log, "breaker_opened", logging.WARNING, upstream=self.name, last_error=why,
                seconds=self.breaker.reset_after,
            )

    def _delay(self, attempt: int) -> float:
        # Full jitter: retries of many edges do not arrive in lockstep.
        return backoff.delay(self.tuning.backoff, self.tuning.backoff_cap, attempt, "full")


def _is_stream(body: object) -> bool:
    return body is not None and not isinstance(body, bytes | bytearray)


class UpstreamChain:
    """Peers first (only for what they already hold), then the origin(s) in order."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.peers = [u for u in upstreams if u.kind == "peer"]
        self.origins = [u for u in upstreams if u.kind == "origin"]

    async def fetch(
        self,
        method: str,
        target: Callable[[Upstream], str],
        headers: Mapping[str, str],
        body: AsyncIterator[bytes] | bytes | None = None,
        *,
        use_peers: bool = True,
    ) -> UpstreamResponse:
        """The first useful answer. A peer counts only with 200/206/304; the origin's answer
        is returned whatever its status (the client should see a 404), and the last error
        is raised when no origin answers."""
        if use_peers and method in ("GET", "HEAD"):
            peer_headers = {**headers, **peering.HEADERS}
            for peer in self.peers:
                try:
                    resp = await peer.fetch(method, target(peer), peer_headers)
                except UpstreamError:
                    continue
                if resp.status in (200, 206, 304):
                    return resp
                resp.close()
        if not self.origins:
            raise UpstreamError("No upstream holds this object and no origin is configured.")
        last: UpstreamError | None = None
        for origin in self.origins:
            try:
                return await origin.fetch(method, target(origin), headers, body)
            except UpstreamError as exc:
                last = exc
        assert last is not None
        raise last


def _deliberate(headers: Mapping[str, str]) -> bool:
    """A 5xx the upstream gives explicit freshness is its answer, not its trouble: an
    LL-HLS origin's 503 for a blocking request it could not satisfy in three target
    durations (draft-pantos-hls-rfc8216bis §6.2.5.2). Asking again would hold the
    player that long once more, and it says nothing about the upstream's health."""
    return "max-age" in headers.get("Cache-Control", "")
