"""The ffmpeg command: one input decoded once, split to every rung, aligned keyframes."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.graph import EncodeOptions, Layout, command, gop_frames
from packager.ladder import Geometry, plan
from packager.probe import AudioStream, Source, VideoStream

VIDEO = VideoStream(index=0, codec="h264", width=1920, height=1080, sar=1.0, fps=30.0, rotation=0)
AUDIO = AudioStream(index=1, codec="aac", channels=2, sample_rate=44100)
RUNGS = plan((1080, 720, 480, 360), Geometry(1920, 1080, 1.0, 30.0))
OUT = Path("/srv/build")


def argv(audio: bool = True, **opts) -> list[str]:
    source = Source("/media/in.mp4", 60.0, VIDEO, AUDIO if audio else None)
    return command(source, RUNGS, EncodeOptions(**opts), OUT, "ffmpeg")


def values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_one_process_decodes_the_source_once_and_splits_it_to_every_rung() -> None:
    args = argv()
    assert args[0] == "ffmpeg" and values(args, "-i") == ["file:/media/in.mp4"]
    (graph,) = values(args, "-filter_complex")
    assert graph.count("]split=4") == 1 and "asplit" not in graph
    for rung in RUNGS:
        assert f"scale={rung.width}:{rung.height}" in graph
    # fMP4: four video renditions and one shared audio rendition, each its own muxer.
    assert values(args, "-f") == ["hls"] * 5
    assert values(args, "-c:a") == ["aac"] and values(args, "-b:a") == ["128k"]
    assert "/srv/build/audio/index.m3u8" in args
    assert values(args, "-hls_segment_filename")[-1] == "/srv/build/audio/seg_%05d.m4s"


def test_mpeg_ts_keeps_audio_muxed_into_every_rung() -> None:
    args = argv(format="ts")
    (graph,) = values(args, "-filter_complex")
    assert graph.count("]asplit=4") == 1
    assert values(args, "-f") == ["hls"] * 4 and len(values(args, "-c:a")) == 4


def test_every_rung_gets_the_same_forced_keyframes_and_no_scene_cuts() -> None:
    args = argv(segment_seconds=4)
    assert values(args, "-force_key_frames") == ["expr:gte(t,n_forced*4)"] * 4
    assert values(args, "-sc_threshold") == ["0"] * 4
    assert values(args, "-g") == ["120"] * 4 and values(args, "-keyint_min") == ["120"] * 4
    assert values(args, "-hls_time") == ["4"] * 5  # the audio rendition cuts at the same times


def test_fmp4_segments_and_init_go_in_each_rendition_directory() -> None:
    args = argv()
    assert values(args, "-hls_segment_type") == ["fmp4"] * 5
    assert values(args, "-hls_segment_filename")[0] == "/srv/build/1080p/seg_%05d.m4s"
    assert values(args, "-hls_fmp4_init_filename") == ["init.mp4"] * 5
    assert "/srv/build/360p/index.m3u8" in args


@pytest.mark.parametrize(
    ("fmt", "single", "segments", "flags"),
    [
        ("ts", False, "/srv/build/720p/seg_%05d.ts", "independent_segments"),
        ("fmp4", True, "/srv/build/720p/media.mp4", "independent_segments+single_file"),
        ("ts", True, "/srv/build/720p/media.ts", "independent_segments+single_file"),
    ],
)
def test_formats_and_single_file_mode(fmt: str, single: bool, segments: str, flags: str) -> None:
    args = argv(format=fmt, single_file=single)
    assert values(args, "-hls_segment_filename")[1] == segments
    assert values(args, "-hls_flags") == [flags] * (4 if fmt == "ts" else 5)
    assert values(args, "-hls_segment_type")[0] == ("fmp4" if fmt == "fmp4" else "mpegts")
    if fmt == "ts" or single:
        assert "-hls_fmp4_init_filename" not in args


def test_a_silent_source_gets_no_audio_encoder() -> None:
    args = argv(audio=False)
    assert "asplit" not in values(args, "-filter_complex")[0]
    assert "-c:a" not in args and len(values(args, "-map")) == 4


def test_vod_playlists_and_machine_readable_progress() -> None:
    args = argv()
    assert values(args, "-hls_playlist_type") == ["vod"] * 5
    assert values(args, "-progress") == ["pipe:1"] and "-nostdin" in args


@pytest.mark.parametrize(
    ("fps", "seconds", "frames"),
    [(30.0, 4.0, 120), (30000 / 1001, 2.0, 60), (25.0, 6.0, 150), (24000 / 1001, 4.0, 96)],
)
def test_gop_is_the_longest_gap_between_forced_keyframes(fps: float, seconds: float,
                                                         frames: int) -> None:
    assert gop_frames(fps, seconds) == frames


def test_layout_names() -> None:
    rung = RUNGS[1]
    assert Layout.of(rung, EncodeOptions()) == Layout(
        "720p", "720p/index.m3u8", "720p/init.mp4", "720p/seg_%05d.m4s"
    )
