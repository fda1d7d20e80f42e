"""Fetch one file from one source into the staging area, verified, or not at all.

The bytes go to ``NAME.part`` while their sha256 is computed on the way; the file is
renamed to NAME only when its size and digest match the manifest, so whatever survives a
crash under a final name is known good and a ``.part`` is always garbage. Third-party
errors (aiohttp, OSError) are translated here, once, into the vcdn tree.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO, Final

import aiohttp

from appliance.pacing import TokenBucket
from vcdn.errors import (
    DiskFull,
    IntegrityError,
    StoreError,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from vcdn.schemas import FileEntry

CHUNK_SIZE: Final = 64 * 1024
PART_SUFFIX: Final = ".part"


def _write(fh: BinaryIO, data: bytes) -> None:
    try:
        fh.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"The cache disk is full ({exc.strerror}).") from None
        raise StoreError(f"Writing a staged file failed: {exc.strerror}.") from None


async def fetch_verified(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    entry: FileEntry,
    *,
    bucket: TokenBucket,
    headers: Mapping[str, str] | None = None,
    read_timeout: float = 10.0,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Download `url` to `dest` if and only if it matches `entry`; return the bytes read.

    Raises UpstreamError (unreachable, timeout, status), IntegrityError (wrong size or
    sha256), DiskFull or StoreError. On any failure nothing is left under `dest`.
    `on_bytes(n)` hears of every chunk as it arrives (progress of large files).
    """
    part = dest.with_name(dest.name + PART_SUFFIX)
    digest = hashlib.sha256()
    received = 0
    client_timeout = aiohttp.ClientTimeout(total=None, connect=read_timeout, sock_read=read_timeout)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        async with session.get(url, headers=headers, timeout=client_timeout) as resp:
            if resp.status != 200:
                raise UpstreamStatus(f"{url} answered {resp.status}.", status=resp.status)
            declared = resp.content_length
            if declared is not None and declared != entry.size:
                raise IntegrityError(
                    f"{url} announced {declared} bytes; the manifest says {entry.size}."
                )
            # Page-cache writes of one chunk do not stall the loop; the fsync goes to a thread.
            with open(part, "wb") as fh:  # noqa: ASYNC230
                async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                    received += len(chunk)
                    if received > entry.size:
                        raise IntegrityError(f"{url} sent more than {entry.size} bytes.")
                    await bucket.take(len(chunk))
                    digest.update(chunk)
                    _write(fh, chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                await asyncio.to_thread(_flush, fh)
        if received != entry.size:
            raise IntegrityError(f"{url} sent {received} bytes; the manifest says {entry.size}.")
        if digest.hexdigest() != entry.sha256.lower():
            raise IntegrityError(f"{url} sent bytes whose sha256 does not match the manifest.")
        os.replace(part, dest)
        return received
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, asyncio.TimeoutError):
            raise UpstreamTimeout(f"{url} did not answer within {read_timeout} s.") from None
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamError(f"{url} failed: {exc.__class__.__name__} {exc}.") from None
        if isinstance(exc, OSError):
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"The cache disk is full ({exc.strerror}).") from None
            raise StoreError(f"Staging {dest.name} failed: {exc.strerror}.") from None
        raise


def _flush(fh: BinaryIO) -> None:
    """Data must be on disk before the rename that makes it count (crash safety)."""
    try:
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"The cache disk is full ({exc.strerror}).") from None
        raise StoreError(f"Flushing a staged file failed: {exc.strerror}.") from None
