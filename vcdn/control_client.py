"""An async client of the control API, for the packager, steering and the appliance daemon.

    async with ControlClient("http://127.0.0.1:8090", token) as control:
        await control.register_title(manifest)
        ack = await control.heartbeat("a1", Heartbeat(state="healthy"))

Errors are translated once, here: the API's 4xx answers become the matching `ClientError`
(`Unauthorized`, `Forbidden`, `NotFound`, `PayloadTooLarge`, ...) carrying the server's
``detail`` sentence; 5xx answers, timeouts, refused connections and unreadable bodies
become `UpstreamError`s (`UpstreamStatus`, `UpstreamTimeout`), which callers retry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp

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
from vcdn.schemas import (
    ApplianceState,
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
DEFAULT_TIMEOUT: Final = 10.0
API: Final = "/api/v1"

_BY_STATUS: Final[dict[int, type[ClientError]]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


@dataclass(frozen=True)
class HeartbeatAck:
    """What the control plane answers to a heartbeat."""

    state: ApplianceState
    heartbeat_interval: float


@dataclass(frozen=True)
class ApplianceList:
    """`GET /appliances`: every appliance with its computed state."""

    appliances: list[ApplianceView]
    heartbeat_interval: float
    generated_at: float


@dataclass(frozen=True)
class TitleSummary:
    title: str
    duration: float
    format: str
    live: bool
    version: int
    renditions: int
    files: int
    total_bytes: int
    registered_at: float
    updated_at: float
    popularity: float


def _id(value: str) -> str:
    return quote(value, safe="")


class ControlClient:
    """One HTTP session to one control server, authenticated by one bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    @classmethod
    def from_env(cls, base_url: str, **kwargs: Any) -> ControlClient:
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
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request; return (status, JSON) for 2xx, raise a vcdn error otherwise."""
        url = f"{self.base_url}{API}{path}"
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise UpstreamTimeout(
                f"The control API at {self.base_url} did not answer in time."
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"Cannot reach the control API at {self.base_url}: {exc}."
            ) from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            if payload is None:
                raise UpstreamError(f"The control API answered {method} {path} without JSON.")
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

    async def list_appliances(self) -> ApplianceList:
        _, data = await self.request("GET", "/appliances")
        return self._decode(ApplianceList, data, "appliance list")

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


__all__ = ["ApplianceList", "ControlClient", "HeartbeatAck", "TitleSummary"]
