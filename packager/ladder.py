"""The ABR ladder, pure: which renditions to encode for a source, at what size and bitrate.

Rules, in the order a video engineer would check them:

* never upscale: a rung taller than the source adds bytes and no picture, so it is dropped;
  if every rung is taller, the source's own height becomes the single rung;
* the width keeps the source's display aspect ratio (sample aspect ratio included) and is
  even, because H.264 4:2:0 works on 2x2 chroma blocks;
* the bitrate grows with the pixel count to the power 0.75 (bits per pixel fall as the
  picture grows, the usual shape of per-title ladders), anchored at 1080p30 = 5 Mb/s, and
  with the square root of the frame rate relative to 30 fps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_HEIGHTS: Final[tuple[int, ...]] = (1080, 720, 480, 360)
MIN_HEIGHT: Final = 16
MAX_HEIGHT: Final = 4320
ANCHOR_PIXELS: Final = 1920 * 1080
ANCHOR_KBPS: Final = 5000
ANCHOR_FPS: Final = 30.0
MIN_VIDEO_KBPS: Final = 100
# VBV: a peak of 110 % of the average over a 1.5 s buffer keeps segment sizes close to
# BANDWIDTH, which is what players budget for when they switch.
MAXRATE_RATIO: Final = 1.1
BUFSIZE_RATIO: Final = 1.5


@dataclass(frozen=True, slots=True)
class Geometry:
    """The picture a player would show: coded size, sample aspect ratio, frame rate."""

    width: int
    height: int
    sar: float = 1.0
    fps: float = 30.0

    @property
    def display_width(self) -> float:
        return self.width * self.sar


@dataclass(frozen=True, slots=True)
class Rung:
    """One rendition of the ladder."""

    width: int
    height: int
    video_kbps: int
    audio_kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p"

    @property
    def maxrate_kbps(self) -> int:
        return math.ceil(self.video_kbps * MAXRATE_RATIO)

    @property
    def bufsize_kbps(self) -> int:
        return math.ceil(self.video_kbps * BUFSIZE_RATIO)


def parse_ladder(text: str) -> tuple[int, ...]:
    """`"1080,720,480"` → (1080, 720, 480); raises ValueError with a sentence saying why."""
    heights: list[int] = []
    for part in text.split(","):
        item = part.strip().removesuffix("p")
        if not item.isascii() or not item.isdigit():
            raise ValueError(
                f"ladder entry {part.strip()!r} is not a height; use e.g. 1080,720,480,360"
            )
        height = int(item)
        if not MIN_HEIGHT <= height <= MAX_HEIGHT:
            raise ValueError(f"ladder height {height} is outside {MIN_HEIGHT}..{MAX_HEIGHT}")
        if height % 2:
            raise ValueError(f"ladder height {height} is odd; H.264 4:2:0 needs even sizes")
        heights.append(height)
    return tuple(sorted(set(heights), reverse=True))


def even_floor(value: float) -> int:
    """The largest even integer not above `value`, at least 2."""
    return max(2, int(value) // 2 * 2)


def scaled_width(source: Geometry, height: int) -> int:
    """Width for `height` that keeps the display aspect ratio, rounded to the nearest even."""
    return max(2, round(source.display_width * height / source.height / 2) * 2)


def video_kbps(width: int, height: int, fps: float) -> int:
    """Target average video bitrate for a picture size and frame rate."""
    pixels = (width * height) / ANCHOR_PIXELS
    rate = ANCHOR_KBPS * math.pow(pixels, 0.75) * math.sqrt(max(fps, 1.0) / ANCHOR_FPS)
    return max(MIN_VIDEO_KBPS, round(rate / 10) * 10)


def audio_kbps(height: int) -> int:
    """AAC-LC stereo bitrate: 128 kb/s is transparent enough; small rungs save a little."""
    return 128 if height >= 480 else 96


def plan(heights: Iterable[int], source: Geometry) -> tuple[Rung, ...]:
    """The rungs to encode for `source`, tallest first; never taller than the source."""
    kept = sorted({h for h in heights if h <= source.height}, reverse=True)
    if not kept:
        kept = [even_floor(source.height)]
    rungs = []
    for height in kept:
        width = scaled_width(source, height)
        rungs.append(Rung(width, height, video_kbps(width, height, source.fps), audio_kbps(height)))
    return tuple(rungs)
