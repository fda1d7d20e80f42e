"""Self-checks reported in every heartbeat: can we write the cache disk, is there room,
can we reach an upstream. Each answers a `Check` whose detail an operator can act on.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import aiohttp

from vcdn.schemas import Check

PROBE_TIMEOUT: Final = 2.0


def disk_writable(cache_dir: Path) -> Check:
    """Write, fsync and remove a small file: catches read-only remounts and dead disks."""
    probe = cache_dir / f".probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"vcdn")
            os.fsync(fd)
        finally:
            os.close(fd)
        return Check(ok=True)
    except OSError as exc:
        return Check(ok=False, detail=f"cannot write to {cache_dir}: {exc.strerror}")
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def free_space(cache_dir: Path, floor: int) -> Check:
    try:
        free = shutil.disk_usage(cache_dir).free
    except OSError as exc:
        return Check(ok=False, detail=f"cannot read disk usage of {cache_dir}: {exc.strerror}")
    if free < floor:
        return Check(ok=False, detail=f"{free} bytes free on the cache disk, under {floor}")
    return Check(ok=True, detail=f"{free} bytes free")


async def reachable(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as resp:
            return resp.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


async def upstream(
    session: aiohttp.ClientSession, origin_url: str, last_fetches: Mapping[str, Check]
) -> Check:
    """Origin `/healthz` now; else whether any peer served our last fetch from it."""
    origin_ok = await reachable(session, origin_url.rstrip("/") + "/healthz")
    peers_ok = [name for name, c in last_fetches.items() if name.startswith("peer ") and c.ok]
    if origin_ok:
        return Check(ok=True, detail="origin reachable")
    if peers_ok:
        return Check(ok=True, detail=f"origin unreachable; {peers_ok[0]} served the last fill")
    return Check(ok=False, detail="origin unreachable and no peer answered the last fill")
