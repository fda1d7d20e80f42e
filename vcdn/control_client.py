"""An async client of the control API, for the packager, steering and the appliance daemon.

    async with ControlClient("http://127.0.0.1:8090", token) as control:
        await control.register_title(manifest)
        ack = await control.heartbeat("a1", Heartbeat(state="healthy"))

Errors are translated once, here: the API's 4xx answers become the matching `ClientError`
(`Unauthorized`, `Forbidden`, `NotFound`, `PayloadTooLarge`, ...) carrying the server's
``detail`` sentence; 5xx answers, timeouts, refused connections and unreadable bodies
become `UpstreamError`s (`UpstreamStatus`, `UpstreamTimeout`), which callers retry.

Replicas: the control plane may run as several stateless instances on one PostgreSQL, so
a client takes several base URLs (``ControlClient(["http://c1:8090", "http://c2:8090"])``,
or `control_urls` of repeated flags / comma-separated ``VCDN_CONTROL_URLS``). A request
goes to the instance that answered last; when it cannot be reached (refused, reset,
timeout, 5xx) the same request is sent to the next one at once, and the failed instance is
skipped for a backoff that doubles up to `MAX_BACKOFF` while it keeps failing. Every
control API write is an idempotent upsert, so resending one that may have landed is safe.
A 4xx is an answer, not a failure: it is raised without trying the others.

TLS: an ``https://`` control URL is verified against the system store or the CA bundle
(`ca_bundle`, else ``VCDN_CA_BUNDLE``); a certificate for another name or from an unknown
CA fails the request with one sentence naming the host and the reason (`vcdn.tls`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from vcdn import backoff, tls, tls_io
from vcdn.errors import (
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
    VcdnError,
)
from vcdn.responses import ApplianceList, HeartbeatAck, TitleSummary
from vcdn.schemas import (
    ApplianceView,
    Enrollment,
    EnrollmentView,
    FillManifest,
    Heartbeat,
    Registration,
    TitleManifest,
    decode,
    encode,
)
from vcdn.settings import env_value

TOKEN_ENV: Final = "VCDN_CONTROL_TOKEN"
URLS_ENV: Final = "VCDN_CONTROL_URLS"
DEFAULT_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 3.0  # a replica whose machine is gone must not cost the whole timeout
API: Final = "/api/v1"
APPLIANCE_PAGE: Final = 1000  # appliances per page of GET /appliances
MAX_PAGES: Final = 10_000
FIRST_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 30.0

_BY_STATUS: Final[dict[int, type[ClientError]]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


def _id(value: str) -> str:
    return quote(value, safe="")


def control_urls(*values: str | Iterable[str] | None, env: bool = True) -> list[str]:
    """Control base URLs from repeated flags and comma-separated lists, in order, without
    duplicates; with none given, from ``VCDN_CONTROL_URLS``. Each must be http(s)."""
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        for item in [value] if isinstance(value, str) else value:
            out.extend(u.strip().rstrip("/") for u in item.split(",") if u.strip())
    if not out and env:
        out = [u.strip().rstrip("/") for u in os.environ.get(URLS_ENV, "").split(",") if u.strip()]
    for url in out:
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"Control URL {url!r} must start with http:// or https://.")
    return list(dict.fromkeys(out))


class Endpoints:
    """The replicas of one control plane and which to ask next: the last that answered,
    then the others in the given order; one that failed waits out a growing backoff."""

    def __init__(self, urls: Sequence[str], clock: Any = time.monotonic) -> None:
        if not urls:
            raise ClientError("At least one control URL is needed.")
        self.urls = [u.rstrip("/") for u in urls]
        self._clock = clock
        self._current = 0
        self._retry_at = [0.0] * len(self.urls)
        self._failures = [0] * len(self.urls)
        self.failovers = 0

    @property
    def current(self) -> str:
        return self.urls[self._current]

    def order(self) -> list[int]:
        """Indices to try: the current one and every replica out of backoff first, then
        those in backoff (soonest first), so a request is never refused untried."""
        now = self._clock()
        n = len(self.urls)
        ring = [(self._current + k) % n for k in range(n)]
        ready = [i for i in ring if self._retry_at[i] <= now]
        waiting = sorted(
            (i for i in ring if self._retry_at[i] > now), key=self._retry_at.__getitem__
        )
        return ready + waiting

    def succeeded(self, i: int) -> None:
        if i != self._current:
            self.failovers += 1
        self._current = i
        self._retry_at[i] = 0.0
        self._failures[i] = 0

    def failed(self, i: int) -> None:
        wait = backoff.delay(FIRST_BACKOFF, MAX_BACKOFF, self._failures[i], "none")
        self._failures[i] += 1
        self._retry_at[i] = self._clock() + wait

    def reachable(self) -> int:
        """Replicas not in backoff: those that answered last time they were asked."""
        now = self._clock()
        return sum(1 for t in self._retry_at if t <= now)


class ControlClient:
    """One HTTP session to the control plane's replicas, authenticated by one bearer token.

    `base_url` is one URL, a comma-separated list or a sequence of them (see `Endpoints`).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
    ) -> None:
        self._ca_bundle = ca_bundle
        self.endpoints = Endpoints(control_urls(base_url, env=False))
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)
        )
        self._session = session
        self._owns_session = session is None

    @property
    def base_url(self) -> str:
        """The replica asked first: the one that answered last."""
        return self.endpoints.current

    @classmethod
    def from_env(cls, base_url: str | Sequence[str], **kwargs: Any) -> ControlClient:
        """A client whose token comes from ``VCDN_CONTROL_TOKEN`` (never the command line)."""
        return cls(base_url, env_value(TOKEN_ENV), **kwargs)

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=tls_io.client_connector(self._ca_bundle)
            )
        return self._session

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request; return (status, JSON) for 2xx, raise a vcdn error otherwise.

        Each replica is tried at most once per call, the last that answered first; the
        error of the last one tried is raised when none answers."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        last: UpstreamError | None = None
        for i in self.endpoints.order():
            try:
                result = await self._send(self.endpoints.urls[i], method, path, data)
            except UpstreamError as exc:
                self.endpoints.failed(i)
                last = exc
                continue
            self.endpoints.succeeded(i)
            return result
        assert last is not None
        raise last

    async def _send(
        self, base_url: str, method: str, path: str, data: bytes | None
    ) -> tuple[int, Any]:
        """One request to one replica; 4xx raise their ClientError (an answer, not a
        failure: the caller does not fail over on them)."""
        url = f"{base_url}{API}{path}"
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(
                method, url, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise UpstreamTimeout(
                f"The control API at {base_url} did not answer in time."
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise UpstreamError(tls.describe_failure(exc, "control API", base_url)) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Cannot reach the control API at {base_url}: {exc}.") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if payload is None:
                raise UpstreamError(
                    f"The control API at {base_url} answered {method} {path} without JSON."
                )
            return status, payload
        detail = payload.get("detail") if isinstance(payload, dict) else None
        message = f"Control API {method} {path}: {status}" + (f": {detail}" if detail else ".")
        if 400 <= status < 500:
            raise _BY_STATUS.get(status, ClientError)(message)
        raise UpstreamStatus(message, status=status)

    @staticmethod
    def _decode(cls: type[Any], data: Any, what: str) -> Any:
        try:
            return decode(cls, data, what)
        except VcdnError as exc:
            raise UpstreamError(f"The control API sent a malformed {what}: {exc}.") from None

    # --- titles ---

    async def register_title(self, manifest: TitleManifest) -> bool:
        """Register or replace a title; True if it was new."""
        status, _ = await self.request("POST", "/titles", encode(manifest))
        return status == 201

    async def put_key(self, title: str, kid: str, scheme: str, key: str) -> bool:
        """Store a content key with the key service (hex kid and key); True if new."""
        status, _ = await self.request(
            "PUT", f"/titles/{_id(title)}/keys/{kid}", {"scheme": scheme, "key": key}
        )
        return status == 201

    async def get_title(self, title: str) -> TitleManifest:
        _, data = await self.request("GET", f"/titles/{_id(title)}")
        if isinstance(data, dict):
            data.pop("popularity", None)
        return self._decode(TitleManifest, data, "title manifest")

    async def title_popularity(self, title: str) -> float:
        _, data = await self.request("GET", f"/titles/{_id(title)}")
        return float(data.get("popularity", 0.0)) if isinstance(data, dict) else 0.0

    async def list_titles(self) -> list[TitleSummary]:
        _, data = await self.request("GET", "/titles")
        titles = data.get("titles") if isinstance(data, dict) else None
        if not isinstance(titles, list):
            raise UpstreamError("The control API sent a title list without 'titles'.")
        return [self._decode(TitleSummary, t, "title summary") for t in titles]

    # --- appliances ---

    async def register_appliance(self, registration: Registration) -> ApplianceView:
        _, data = await self.request("POST", "/appliances", encode(registration))
        return self._decode(ApplianceView, data, "appliance")

    async def heartbeat(self, appliance: str, heartbeat: Heartbeat) -> HeartbeatAck:
        _, data = await self.request(
            "PUT", f"/appliances/{_id(appliance)}/heartbeat", encode(heartbeat)
        )
        return self._decode(HeartbeatAck, data, "heartbeat answer")

    async def list_appliances(self, page: int = APPLIANCE_PAGE) -> ApplianceList:
        """Every appliance, read `page` at a time (a page costs the control plane's event
        loop a few ms; the whole of a big fleet at once would stall its heartbeats).
        `generated_at` is the first page's: the oldest, so staleness is never understated.
        Pages may come from different replicas: the cursor is an appliance id."""
        first: ApplianceList | None = None
        items: list[ApplianceView] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            query = f"/appliances?limit={page}" + ("" if after is None else f"&after={_id(after)}")
            _, data = await self.request("GET", query)
            got: ApplianceList = self._decode(ApplianceList, data, "appliance list")
            first = first or got
            items.extend(got.appliances)
            if got.next is None:
                return ApplianceList(items, first.heartbeat_interval, first.generated_at)
            if got.next == after or not got.appliances:
                raise UpstreamError("The control API sent an appliance page cursor that "
                                    f"does not advance ({got.next!r}).")
            after = got.next
        raise UpstreamError(f"The control API sent more than {MAX_PAGES} appliance pages.")

    async def fill_manifest(self, appliance: str) -> FillManifest:
        _, data = await self.request("GET", f"/appliances/{_id(appliance)}/fill-manifest")
        return self._decode(FillManifest, data, "fill manifest")

    # --- enrolment ---

    async def enroll(self, enrollment: Enrollment) -> tuple[EnrollmentView, str]:
        """Enrol an appliance (operator); its enrolment and its new token (shown once)."""
        _, data = await self.request("POST", "/enrollments", encode(enrollment))
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise UpstreamError("The control API answered an enrolment without a token.")
        return self._decode(EnrollmentView, data.get("enrollment"), "enrolment"), token

    async def update_enrollment(self, enrollment: Enrollment) -> EnrollmentView:
        """Change an enrolment's site, approved prefixes or label (operator)."""
        _, data = await self.request("PUT", f"/enrollments/{_id(enrollment.id)}",
                                     encode(enrollment))
        return self._decode(EnrollmentView, data, "enrolment")

    async def decommission(self, appliance: str) -> bool:
        """Forget an appliance's registration and revoke its tokens (operator); its
        enrolment stays. False if it was not registered."""
        try:
            await self.request("DELETE", f"/appliances/{_id(appliance)}")
        except NotFound:
            return False
        return True

    async def rotate_token(self, appliance: str) -> str:
        """A new token for an enrolled appliance (operator); every older one stops working."""
        _, data = await self.request("POST", f"/enrollments/{_id(appliance)}/token")
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise UpstreamError("The control API answered a token rotation without a token.")
        return token

    async def enrollment(self, appliance: str) -> EnrollmentView:
        """One enrolment: the operator's, or an appliance's own (its approved prefixes)."""
        _, data = await self.request("GET", f"/enrollments/{_id(appliance)}")
        return self._decode(EnrollmentView, data, "enrolment")

    async def popularity(self, site: str | None = None) -> list[dict[str, Any]]:
        path = "/popularity" if site is None else f"/popularity?site={quote(site, safe='')}"
        _, data = await self.request("GET", path)
        scores = data.get("scores") if isinstance(data, dict) else None
        if not isinstance(scores, list):
            raise UpstreamError("The control API sent popularity without 'scores'.")
        return scores


__all__ = [
    "ApplianceList",
    "ControlClient",
    "Endpoints",
    "HeartbeatAck",
    "TitleSummary",
    "control_urls",
]
