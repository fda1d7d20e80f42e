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
#: Range headers per case, cycled by wrk and sampled by the byte checker.
RANGES_PER_CASE: Final = 29  # prime, so (path, range) pairs cycle through every combination


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    paths: tuple[str, ...]  # inside the title
    ranges: tuple[str, ...] = ()  # Range header values, cycled independently of paths
    object_size: int = 0

    @property
    def status(self) -> int:
        return 206 if self.ranges else 200


def playlist(n: int) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:4",
             "#EXT-X-PLAYLIST-TYPE:VOD", '#EXT-X-MAP:URI="init.mp4"']
    for i in range(1, n + 1):
        lines += ["#EXTINF:4.000,", f"seg_{i:05d}.m4s"]
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def _ranges(rng: random.Random) -> dict[str, tuple[str, ...]]:
    """What players send: aligned 64 KiB ranges, the same at an unaligned offset
    (`bytes=1000-65535` style), suffix ranges (the moov atom at the end) and multi-range."""
    slots = LARGE // RANGE
    aligned, unaligned, multi = [], [], []
    for _ in range(RANGES_PER_CASE):
        k = rng.randrange(slots)
        aligned.append(f"bytes={k * RANGE}-{(k + 1) * RANGE - 1}")
        unaligned.append(f"bytes={k * RANGE + 1000}-{(k + 1) * RANGE - 1}")
        a, b = sorted(rng.sample(range(slots), 2))
        multi.append(f"bytes={a * RANGE}-{a * RANGE + 999},{b * RANGE + 5000}-{b * RANGE + 21383}")
    suffix = [f"bytes=-{RANGE - 97 * i}" for i in range(RANGES_PER_CASE)]
    return {"aligned": tuple(aligned), "unaligned": tuple(unaligned), "suffix": tuple(suffix),
            "multi": tuple(multi)}


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
    r = _ranges(rng)
    big = tuple(large)
    return [
        Case("16k", "hot 16 KiB segments", tuple(small), object_size=SMALL),
        Case("2m", "hot 2 MiB segments", big, object_size=LARGE),
        Case("range64k", "64 KiB ranges of 2 MiB segments, aligned", big, r["aligned"], LARGE),
        Case("range_unaligned", "64 KiB ranges at offset 1000 of a 64 KiB slot", big,
             r["unaligned"], LARGE),
        Case("range_suffix", "suffix ranges (last ~64 KiB) of 2 MiB segments", big, r["suffix"],
             LARGE),
        Case("multirange", "two-part ranges (1000 B + 16 KiB), multipart/byteranges", big,
             r["multi"], LARGE),
        Case("playlist", f"VOD playlists ({len(pl)} B)", tuple(lists), object_size=len(pl)),
    ]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)
