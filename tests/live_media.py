"""Real live fMP4 media for tests: the packager's own live ffmpeg command, run as fast as
it can (no ``-re``) on a lavfi source, so origin tests judge the bytes `vcdn live` sends."""

from __future__ import annotations

import functools
import os
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


AUDIO = "audio"


@dataclass(frozen=True)
class AVMedia:
    video: Media
    audio: Media


@functools.cache
def encode_av(slot: int = SLOT) -> AVMedia:
    """SECONDS one-second segments of a 160x90 pattern with a tone: the video rendition
    and the separate audio rendition `vcdn live` publishes, numbered from `slot`."""
    from packager.livegraph import spool_directories

    graph = (f"testsrc2=size=160x90:rate=30:duration={SECONDS}[out0];"
             f"sine=frequency=440:sample_rate=48000:duration={SECONDS}[out1]")
    live = LiveSource(f"lavfi:{graph}", graph, (("f", "lavfi"),))
    source = probe_live(live)
    rungs = plan((90,), source.video.geometry)
    spool = Path(tempfile.mkdtemp(prefix="vcdn-test-live."))
    for name in spool_directories(rungs, source):
        (spool / name).mkdir()
    options = EncodeOptions(segment_seconds=1.0, preset="ultrafast")
    argv = live_command(live, source, rungs, options, spool, slot, "ffmpeg")
    subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def read(d: Path) -> Media:
        segments = {int(p.stem.removeprefix("seg_")): p.read_bytes() for p in d.glob("seg_*.m4s")}
        return Media((d / "init.mp4").read_bytes(), segments)

    video, audio = read(spool / RENDITION), read(spool / AUDIO)
    # The input's last milliseconds of sound, which `vcdn live` does not publish.
    last = max(video.segments)
    return AVMedia(video, Media(audio.init, {m: b for m, b in audio.segments.items()
                                             if m <= last}))


def av_event_doc(window: float = 60.0, ended: bool = False) -> dict[str, object]:
    """`event_doc` of an event with sound: its own audio rendition."""
    doc = event_doc(window, ended)
    (video,) = doc["renditions"]  # type: ignore[misc]
    video["codecs"] += ",mp4a.40.2"  # type: ignore[index]
    video["bandwidth"] += 96000  # type: ignore[index]
    doc["audio"] = {"name": AUDIO, "bandwidth": 96000, "codecs": "mp4a.40.2",
                    "sampling_rate": 48000, "channels": 2, "playlist": f"{AUDIO}/index.m3u8"}
    return doc


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


LL_SECONDS = 10
PART_SECONDS = 0.333


@dataclass(frozen=True)
class LowLatencyMedia:
    init: bytes
    parts: dict[int, list[bytes]]  # MSN -> its parts, in order
    segments: dict[int, bytes]  # MSN -> the concatenation of its parts


@functools.cache
def encode_ll(slot: int = SLOT) -> LowLatencyMedia:
    """LL_SECONDS one-second segments of three parts each, cut by the packager's own
    low-latency command and cutter (`packager.llpublish`, `packager.parts`)."""
    from packager.llpublish import ll_command
    from packager.parts import (
        BoxSplitter,
        Cutter,
        PartData,
        PartOpened,
        parse_fragment,
        parse_init,
        shift_fragment,
    )

    graph = f"testsrc2=size=160x90:rate=30:duration={LL_SECONDS}"
    live = LiveSource(f"lavfi:{graph}", graph, (("f", "lavfi"),))
    source = probe_live(live)
    rungs = plan((90,), source.video.geometry)
    options = EncodeOptions(segment_seconds=1.0, preset="ultrafast")
    read_fd, write_fd = os.pipe()
    argv = ll_command(live, source, rungs, options, [write_fd], "ffmpeg")
    proc = subprocess.Popen(argv, pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        stream = pipe.read()
    assert proc.wait(60) == 0
    boxes = BoxSplitter().feed(stream)
    init = boxes[0][1] + boxes[1][1]
    tracks = parse_init(init)
    offsets = {t.track_id: slot * t.timescale for t in tracks.values()}
    ticks = {t.track_id: t.timescale // 30 for t in tracks.values()}
    cutter = Cutter(tracks, 1.0, PART_SECONDS, 30.0)
    parts: dict[int, list[bytes]] = {}
    events = []
    for i in range(2, len(boxes) - 1, 2):
        if boxes[i][0] == b"moof" and boxes[i + 1][0] == b"mdat":
            frag = parse_fragment(boxes[i][1] + boxes[i + 1][1], tracks)
            events += cutter.feed(shift_fragment(frag, offsets, ticks))
    events += cutter.finish()
    for ev in events:
        if isinstance(ev, PartOpened):
            parts.setdefault(ev.msn, []).append(ev.data)
        elif isinstance(ev, PartData):
            parts[ev.msn][-1] += ev.data
    # The first segment's last part may be one frame (see packager.parts); drop the
    # first and last segments, so every segment here is three whole parts.
    usable = {m: p for m, p in parts.items() if len(p) == 3 and m != slot}
    return LowLatencyMedia(init, usable, {m: b"".join(p) for m, p in usable.items()})


def ll_event_doc(window: float = 60.0) -> dict[str, object]:
    return {**event_doc(window), "part_seconds": 0.334}
