"""The three control-plane calls an appliance makes, over one aiohttp session.

Kept to what the appliance needs (register, heartbeat, fill manifest) and translating
every failure once into the vcdn tree, so the loops above decide on `NotFound` (the
control plane forgot us: register again) versus `UpstreamError` (it is down: back off)
without knowing aiohttp.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp

from vcdn.errors import (
    ClientError,
    Forbidden,
    NotFound,
    Unauthorized,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from vcdn.schemas import FillManifest, Heartbeat, Registration, decode, encode

API: Final = "/api/v1"
MAX_BODY: Final = 16 * 1024 * 1024  # a fill manifest of many titles, not more


class ControlApi:
    """Calls `base_url` + /api/v1 with `Authorization: Bearer token` (RFC 6750 §2.1)."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str, timeout: float = 5.0
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + API
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = self._base + path
        try:
            async with self._session.request(
                method, url, json=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                data = await resp.read()
                if len(data) > MAX_BODY:
                    raise UpstreamError(f"{url} answered with more than {MAX_BODY} bytes.")
                if resp.status < 300:
                    return await resp.json(content_type=None) if data else None
                detail = _detail(data)
                if resp.status == 404:
                    raise NotFound(f"{method} {url}: 404 {detail}")
                if resp.status == 401:
                    raise Unauthorized(f"The control plane refused our token (401): {detail}")
                if resp.status == 403:
                    raise Forbidden(f"The control plane forbids this (403): {detail}")
                if 400 <= resp.status < 500:
                    raise ClientError(f"{method} {url}: {resp.status} {detail}")
                raise UpstreamStatus(f"{method} {url}: {resp.status} {detail}", status=resp.status)
        except TimeoutError:
            raise UpstreamTimeout(f"The control plane at {url} did not answer in time.") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamError(f"The control plane at {url} failed: {exc}.") from None

    async def register(self, reg: Registration) -> None:
        await self._call("POST", "/appliances", encode(reg))

    async def heartbeat(self, appliance_id: str, beat: Heartbeat) -> None:
        await self._call("PUT", f"/appliances/{appliance_id}/heartbeat", encode(beat))

    async def fill_manifest(self, appliance_id: str) -> FillManifest:
        data = await self._call("GET", f"/appliances/{appliance_id}/fill-manifest")
        try:
            return decode(FillManifest, data)
        except ClientError as exc:
            raise UpstreamError(f"The control plane sent a bad fill manifest: {exc}") from None


def _detail(data: bytes) -> str:
    text = data[:300].decode("utf-8", "replace").strip()
    return text or "(no body)"

