"""Real live fMP4 media for tests: the packager's own live ffmpeg command, run as fast as
it can (no ``-re``) on a lavfi source, so origin tests judge the bytes `vcdn live` sends."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.graph import EncodeOptions
from packager.ladder import plan
from packager.live import probe_live
from packager.livegraph import LiveSource, live_command

SLOT = 1_000_000  # MSN of the first segment: 1,000,000 s after the epoch (1970-01-12)
SECONDS = 5
RENDITION = "90p"


@dataclass(frozen=True)
class Media:
    init: bytes
    segments: dict[int, bytes]  # MSN -> bytes


@functools.cache
def encode(pattern: str = "testsrc2", slot: int = SLOT) -> Media:
    """SECONDS one-second segments of a 160x90 pattern, numbered from `slot`."""
    graph = f"{pattern}=size=160x90:rate=30:duration={SECONDS}"
    live = LiveSource(f"lavfi:{graph}", graph, (("f", "lavfi"),))
    source = probe_live(live)
    rungs = plan((90,), source.video.geometry)
    spool = Path(tempfile.mkdtemp(prefix="vcdn-test-live."))
    (spool / RENDITION).mkdir()
    options = EncodeOptions(segment_seconds=1.0, preset="ultrafast")
    argv = live_command(live, source, rungs, options, spool, slot, "ffmpeg")
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    d = spool / RENDITION
    segments = {
        int(p.stem.removeprefix("seg_")): p.read_bytes() for p in d.glob("seg_*.m4s")
    }
    return Media((d / "init.mp4").read_bytes(), segments)


def event_doc(window: float = 60.0, ended: bool = False) -> dict[str, object]:
    return {
        "segment_seconds": 1.0,
        "window": window,
        "ended": ended,
        "renditions": [{
            "name": RENDITION, "width": 160, "height": 90, "bandwidth": 200000,
            "average_bandwidth": 150000, "codecs": "avc1.42c00b", "frame_rate": 30.0,
            "playlist": f"{RENDITION}/index.m3u8",
        }],
    }
