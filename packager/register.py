"""Registering a published title with the control API: ``POST {control}/api/v1/titles``.

The body is the title's manifest (`vcdn.schemas.TitleManifest`), the same document that
sits next to the title as ``manifest.json``, so the catalog and the origin can never
disagree about sizes or checksums. The packager role authenticates with a bearer token
from ``VCDN_CONTROL_TOKEN``; 200 (updated) and 201 (created) are success.
"""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp

from vcdn.errors import UpstreamError, UpstreamStatus, UpstreamTimeout
from vcdn.schemas import TitleManifest, encode

TITLES_PATH: Final = "/api/v1/titles"
TOKEN_ENV: Final = "VCDN_CONTROL_TOKEN"
TIMEOUT_S: Final = 15.0
OK_STATUSES: Final = frozenset({200, 201})
BODY_EXCERPT: Final = 200


def titles_url(control: str) -> str:
    return control.rstrip("/") + TITLES_PATH


async def register_title(
    control: str, manifest: TitleManifest, token: str, *, timeout_s: float = TIMEOUT_S
) -> int:
    """POST the manifest; returns the status (200 or 201) or raises an UpstreamError."""
    url = titles_url(control)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.post(url, json=encode(manifest), headers=headers) as resp,
        ):
            if resp.status in OK_STATUSES:
                return resp.status
            body = (await resp.text(errors="replace")).strip().replace("\n", " ")
            raise UpstreamStatus(
                f"the control API at {url} answered {resp.status} {resp.reason}"
                + (f": {body[:BODY_EXCERPT]}" if body else ""),
                status=resp.status,
            )
    except TimeoutError:
        raise UpstreamTimeout(
            f"the control API at {url} did not answer in {timeout_s:g} s"
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"could not reach the control API at {url}: {exc}") from None


def register(
    control: str, manifest: TitleManifest, token: str, *, timeout_s: float = TIMEOUT_S
) -> int:
    """Blocking wrapper for the command line."""
    return asyncio.run(register_title(control, manifest, token, timeout_s=timeout_s))
