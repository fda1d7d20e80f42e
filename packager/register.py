"""Registering a published title with the control API: ``POST {control}/api/v1/titles``.

The body is the title's manifest (`vcdn.schemas.TitleManifest`), the same document that
sits next to the title as ``manifest.json``, so the catalog and the origin can never
disagree about sizes or checksums. The packager role authenticates with a bearer token
from ``VCDN_CONTROL_TOKEN``; 201 (created) and 200 (replaced) are success. The HTTP call
and its error translation are the shared `vcdn.control_client.ControlClient`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from packager.encrypt import TitleKey
from vcdn.schemas import TitleManifest

__all__ = ["TIMEOUT_S", "TOKEN_ENV", "register", "register_title", "store_key"]

TIMEOUT_S: Final = 15.0
# The variable `vcdn.control_client.ControlClient.from_env` reads. Named here, and the
# client imported only when registering, so that `vcdn package` without --control does
# not pay aiohttp's import time (~0.4 s) on every run.
TOKEN_ENV: Final = "VCDN_CONTROL_TOKEN"
URLS_ENV: Final = "VCDN_CONTROL_URLS"  # replicas, comma-separated, when --control is not given


async def register_title(
    control: str | Sequence[str],
    manifest: TitleManifest,
    token: str,
    *,
    timeout_s: float = TIMEOUT_S,
) -> int:
    """POST the manifest; returns 201 (new) or 200 (replaced), else raises a VcdnError
    (ClientError subclasses for 4xx, UpstreamError for 5xx, timeouts, refusals)."""
    from vcdn.control_client import ControlClient

    async with ControlClient(control, token, timeout=timeout_s) as client:
        created = await client.register_title(manifest)
    return 201 if created else 200


def register(
    control: str | Sequence[str],
    manifest: TitleManifest,
    token: str,
    *,
    timeout_s: float = TIMEOUT_S,
) -> int:
    """Blocking wrapper for the command line."""
    return asyncio.run(register_title(control, manifest, token, timeout_s=timeout_s))


async def put_key(
    control: str | Sequence[str], title: str, key: TitleKey, token: str,
    *, timeout_s: float = TIMEOUT_S,
) -> bool:
    """Store an encrypted title's key with the key service (``PUT /titles/{id}/keys/{kid}``)."""
    from vcdn.control_client import ControlClient

    async with ControlClient(control, token, timeout=timeout_s) as client:
        return await client.put_key(title, key.kid.hex(), key.scheme, key.key.hex())


def store_key(control: str | Sequence[str], title: str, key: TitleKey, token: str) -> bool:
    """Blocking wrapper: the packager stores the key before it publishes the title."""
    return asyncio.run(put_key(control, title, key, token))
