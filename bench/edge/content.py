"""The files both servers serve, and the request mixes (cases) run against them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TITLE: Final = "bench"
SMALL: Final = 16 * 1024
LARGE: Final = 2 * 1024 * 1024
RANGE: Final = 64 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    paths: tuple[str, ...]  # inside the title
    range_size: int | None = None  # random aligned ranges of this size
    object_size: int = 0

    @property
    def expected_length(self) -> int:
        return self.range_size or self.object_size


def playlist(n: int) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4",
             "#EXT-X-PLAYLIST-TYPE:VOD", '#EXT-X-MAP:URI="init.mp4"']
    for i in range(1, n + 1):
        lines += ["#EXTINF:4.000,", f"seg_{i:05d}.m4s"]
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def build(root: Path) -> list[Case]:
    """Write the objects under root/bench/ and return the cases."""
    rng = random.Random(7)
    base = root / TITLE
    small = [f"s16k/seg_{i:05d}.m4s" for i in range(32)]
    large = [f"m2/seg_{i:05d}.m4s" for i in range(8)]
    lists = [f"pl/v{i}/index.m3u8" for i in range(8)]
    for rel in small:
        _write(base / rel, rng.randbytes(SMALL))
    for rel in large:
        _write(base / rel, rng.randbytes(LARGE))
    pl = playlist(150)
    for rel in lists:
        _write(base / rel, pl)
    for d in (root, *base.rglob("*")):
        if d.is_dir():
            d.chmod(0o755)  # nginx workers run as nobody
    return [
        Case("16k", "hot 16 KiB segments", tuple(small), object_size=SMALL),
        Case("2m", "hot 2 MiB segments", tuple(large), object_size=LARGE),
        Case("range64k", "64 KiB ranges of 2 MiB segments", tuple(large), RANGE, LARGE),
        Case("playlist", f"VOD playlists ({len(pl)} B)", tuple(lists), object_size=len(pl)),
    ]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)
