"""The sha256 of a file, the one way every part computes it.

Titles are vouched for by the sha256 of each file (`manifest.json`); the packager writes
them, the origin recomputes them for live titles, the edge checks an imported or filled
object against them and the appliance a file it already holds. All of them read the file
in chunks, so a multi-gigabyte rendition never sits in memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

CHUNK: Final = 1024 * 1024


def sha256_file(path: Path) -> str:
    """The lowercase hex sha256 of the bytes of `path`."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
