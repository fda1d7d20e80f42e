"""Strong ETags from each title's `manifest.json`, read once per title and re-read when
its mtime changes (checked at most once per `RECHECK_SECONDS`).

The manifest's sha256 is a validator that survives copies between machines, unlike
(inode, mtime): the origin, peers and the edge all name the same bytes the same way.
A file whose size disagrees with its manifest entry (a republish in progress) falls back
to the stat-derived ETag rather than claiming a checksum it may not have.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from vcdn.errors import ClientError
from vcdn.httpserve.validators import sha256_etag, stat_etag
from vcdn.logs import event
from vcdn.schemas import TitleManifest, decode

log = logging.getLogger("vcdn.origin")
RECHECK_SECONDS: Final = 1.0
MANIFEST_NAME: Final = "manifest.json"


@dataclass(frozen=True, slots=True)
class _Entry:
    mtime_ns: int
    checked: float
    files: dict[str, tuple[int, str]]  # path → (size, etag)


class Catalog:
    """Per-title manifest cache under a content root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._titles: dict[str, _Entry] = {}

    def _load(self, title: str, now: float) -> _Entry:
        entry = self._titles.get(title)
        if entry is not None and now - entry.checked < RECHECK_SECONDS:
            return entry
        path = self.root / title / MANIFEST_NAME
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError:
            mtime_ns = -1
        if entry is not None and entry.mtime_ns == mtime_ns:
            entry = _Entry(mtime_ns, now, entry.files)
        else:
            entry = _Entry(mtime_ns, now, self._read(path) if mtime_ns >= 0 else {})
        self._titles[title] = entry
        return entry

    def _read(self, path: Path) -> dict[str, tuple[int, str]]:
        try:
            manifest = decode(TitleManifest, json.loads(path.read_bytes()))
        except (OSError, ValueError, ClientError, TypeError) as exc:
            event(log, "manifest_unreadable", logging.WARNING, path=str(path), error=str(exc))
            return {}
        return {f.path: (f.size, sha256_etag(f.sha256)) for f in manifest.files}

    def etag(self, title: str, rel: str, st: os.stat_result) -> str:
        """The ETag of `{title}/{rel}` whose stat is `st`."""
        known = self._load(title, time.monotonic()).files.get(rel)
        if known is not None and known[0] == st.st_size:
            return known[1]
        return stat_etag(st)
