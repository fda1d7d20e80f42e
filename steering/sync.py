"""The control-API client of steering: fetch and decode, no decisions.

`fetch_appliances` reads `GET {control}/api/v1/appliances`; `title_exists` asks
`GET {control}/api/v1/titles/{id}`. Every failure is translated once, here, into the
`UpstreamError` family, so the caller only decides whether to keep the last good view.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from vcdn.errors import ClientError, UpstreamError, UpstreamStatus, UpstreamTimeout
from vcdn.schemas import ApplianceView, decode

TIMEOUT: Final = aiohttp.ClientTimeout(total=5.0)


@dataclass(frozen=True)
class ApplianceList:
    appliances: list[ApplianceView]
    heartbeat_interval: float
    generated_at: float


class ControlClient:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str = "") -> None:
        self._session = session
        self._base = base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def _get(self, path: str) -> tuple[int, Any]:
        url = f"{self._base}{path}"
        try:
            async with self._session.get(url, headers=self._headers, timeout=TIMEOUT) as r:
                if r.status == 404:
                    return 404, None
                if r.status != 200:
                    raise UpstreamStatus(f"Control API answered {r.status} for {url}.",
                                         status=r.status)
                return 200, await r.json(content_type=None)
        except TimeoutError:
            raise UpstreamTimeout(f"Control API did not answer {url} in time.") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamError(f"Control API request {url} failed: {exc}.") from None

    async def fetch_appliances(self) -> ApplianceList:
        _, body = await self._get("/api/v1/appliances")
        if not isinstance(body, dict) or not isinstance(body.get("appliances"), list):
            raise UpstreamError("Control API /appliances did not return an 'appliances' list.")
        try:
            items = [decode(ApplianceView, a, f"appliances[{i}]")
                     for i, a in enumerate(body["appliances"])]
        except ClientError as exc:
            raise UpstreamError(f"Control API sent a malformed appliance: {exc}.") from None
        interval = body.get("heartbeat_interval", 10.0)
        generated = body.get("generated_at", 0.0)
        if not isinstance(interval, int | float) or not isinstance(generated, int | float):
            raise UpstreamError("Control API /appliances has a non-numeric heartbeat_interval.")
        return ApplianceList(items, float(interval), float(generated))

    async def title_exists(self, title: str) -> bool:
        status, _ = await self._get(f"/api/v1/titles/{quote(title, safe='')}")
        return status == 200


async def resolve_hosts(hosts: set[str]) -> dict[str, tuple[str, ...]]:
    """Addresses of appliance host names (public URLs that name a host, not an address)."""
    loop = asyncio.get_running_loop()
    out: dict[str, tuple[str, ...]] = {}
    for host in hosts:
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None), 2.0)
        except (OSError, TimeoutError):
            continue
        out[host] = tuple(dict.fromkeys(str(i[4][0]) for i in infos))
    return out
