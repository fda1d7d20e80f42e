"""The control-API calls of steering: fetch and decode, no decisions.

`fetch_appliances` reads `GET {control}/api/v1/appliances`; `title_exists` asks
`GET {control}/api/v1/titles/{id}`. Both go through the shared `vcdn.control_client`; here
every failure, including a refused token, becomes an `UpstreamError`, so the caller has one
thing to decide: keep the last good view and say so.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import quote

import aiohttp

from vcdn.control_client import ControlClient as SharedClient
from vcdn.errors import ClientError, NotFound, UpstreamError, UpstreamTimeout
from vcdn.responses import ApplianceList

TIMEOUT_SECONDS: Final = 5.0

__all__ = ["ApplianceList", "ControlClient", "resolve_hosts"]


class ControlClient:
    """`base` is one control URL or several (comma-separated): the shared client fails over
    between replicas; `reachable` says how many answered when last asked."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str = "") -> None:
        self._client = SharedClient(base, token or None, session=session,
                                    timeout=TIMEOUT_SECONDS)
        self._base = ",".join(self._client.endpoints.urls)

    @property
    def urls(self) -> list[str]:
        return list(self._client.endpoints.urls)

    @property
    def current(self) -> str:
        return self._client.endpoints.current

    def reachable(self) -> int:
        return self._client.endpoints.reachable()

    async def fetch_appliances(self) -> ApplianceList:
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                return await self._client.list_appliances()
        except TimeoutError:
            raise UpstreamTimeout(f"Control API {self._base} did not answer in time.") from None
        except ClientError as exc:  # 401/403: our token; 4xx: we asked wrongly
            raise UpstreamError(f"Control API refused the appliance list: {exc}") from None

    async def title_exists(self, title: str) -> bool:
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self._client.request("GET", f"/titles/{quote(title, safe='')}")
        except NotFound:
            return False
        except TimeoutError:
            raise UpstreamTimeout(f"Control API {self._base} did not answer in time.") from None
        except ClientError as exc:
            raise UpstreamError(f"Control API refused the title lookup: {exc}") from None
        return True


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
