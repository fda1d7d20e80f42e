"""Fixtures for the packager: tiny sources generated with ffmpeg's lavfi (testsrc2 + sine)
and titles packaged once per session, so many tests check one real encode."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from packager.graph import EncodeOptions
from packager.package import Request, Result, package
from packager.run import NullReporter, Reporter
from tests.conftest import require_tool

SEGMENT_S = 2.0
SOURCE_S = 6.0
LADDER = (240, 144)


def quiet(title: str, duration: float) -> Reporter:
    return NullReporter()


def make_source(
    path: Path,
    *,
    seconds: float = SOURCE_S,
    size: str = "320x240",
    rate: str = "30",
    audio: bool = True,
    video: bool = True,
    extra: tuple[str, ...] = (),
) -> Path:
    """Generate a source with lavfi: testsrc2 video and/or a sine tone."""
    require_tool("ffmpeg")
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += [*extra, str(path)]
    subprocess.run(args, check=True, timeout=60)
    return path


def rotate(source: Path, out: Path) -> Path:
    """Remux with a 90° display matrix (the mov muxer writes it from the rotate tag)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source),
         "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out)],
        check=True, timeout=60,
    )
    return out


def ffprobe(path: Path, *args: str) -> dict:
    require_tool("ffprobe")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@dataclass(frozen=True)
class Packaged:
    result: Result
    root: Path
    source: Path

    @property
    def dir(self) -> Path:
        return self.result.path


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    return {
        "av": make_source(d / "av.mp4"),
        "silent": make_source(d / "silent.mp4", seconds=4, audio=False),
        # 4:3 storage with 16:15 pixels displays 5 % wider: width must follow the display.
        "anamorphic": make_source(
            d / "anamorphic.mp4", seconds=2, size="360x288", audio=False,
            extra=("-vf", "setsar=16/15"),
        ),
        # A phone held upright: 320x240 stored, a 90° display matrix, shown as 240x320.
        "rotated": rotate(make_source(d / "upright.mp4", seconds=2, audio=False),
                          d / "rotated.mp4"),
    }


@pytest.fixture(scope="session")
def package_once(
    tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]
) -> Callable[..., Packaged]:
    """Package a source once per distinct argument set for the whole session."""
    cache: dict[tuple, Packaged] = {}

    def run(
        source: str = "av",
        *,
        ladder: tuple[int, ...] = LADDER,
        fmt: str = "fmp4",
        single_file: bool = False,
        segment_seconds: float = SEGMENT_S,
        preset: str = "veryfast",
    ) -> Packaged:
        key = (source, ladder, fmt, single_file, segment_seconds, preset)
        if key not in cache:
            root = tmp_path_factory.mktemp("origin")
            request = Request(
                source=sources[source],
                title=f"{source}-{fmt}{'-single' if single_file else ''}-{len(cache)}",
                origin_root=root,
                heights=ladder,
                options=EncodeOptions(
                    segment_seconds=segment_seconds,
                    format=fmt,  # type: ignore[arg-type]
                    single_file=single_file,
                    preset=preset,
                ),
            )
            cache[key] = Packaged(package(request, quiet), root, sources[source])
        return cache[key]

    return run
