"""`manifest.json`: every file of a title with its size and sha256, plus what it is.

Appliances fill from it and check every byte they cache against it, so it lists every
file the title serves (everything but the manifest itself), with POSIX paths relative to
the title directory, sorted so the same title always gives the same document.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from vcdn.schemas import FileEntry, Rendition, TitleManifest, encode

MANIFEST_NAME: Final = "manifest.json"
CHUNK_SIZE: Final = 1024 * 1024


def file_entry(root: Path, path: Path, *, sync: bool = True) -> FileEntry:
    """Size and sha256 of one file; with `sync`, its bytes are on disk before we vouch for
    them (the publish rename that follows must not expose a title a crash could empty)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return FileEntry(path.relative_to(root).as_posix(), size, digest.hexdigest())


def file_entries(root: Path, *, sync: bool = True) -> list[FileEntry]:
    """Every regular file under `root` except the manifest, sorted by path."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p != root / MANIFEST_NAME)
    return [file_entry(root, p, sync=sync) for p in paths]


def utc_now() -> str:
    """ISO-8601 UTC with a Z, to the second: ``2026-11-21T20:15:00Z``."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build(
    title: str,
    *,
    duration: float,
    segment_seconds: float,
    format: str,
    single_file: bool,
    renditions: Sequence[Rendition],
    files: Sequence[FileEntry],
    created_at: str | None = None,
) -> TitleManifest:
    return TitleManifest(
        title=title,
        duration=round(duration, 3),
        segment_seconds=segment_seconds,
        format=format,  # type: ignore[arg-type]
        single_file=single_file,
        renditions=list(renditions),
        files=list(files),
        created_at=created_at or utc_now(),
    )


def dumps(manifest: TitleManifest) -> str:
    return json.dumps(encode(manifest), indent=2) + "\n"


def write(root: Path, manifest: TitleManifest) -> Path:
    path = root / MANIFEST_NAME
    with open(path, "w") as fh:
        fh.write(dumps(manifest))
        fh.flush()
        os.fsync(fh.fileno())
    return path
