"""The live ffmpeg command: source specs, the shared epoch, and the live muxer options."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.graph import EncodeOptions
from packager.ladder import Geometry, plan
from packager.livegraph import first_slot, live_output_options, parse_source_spec, slot_time
from packager.probe import Source, VideoStream


@pytest.mark.parametrize(
    ("spec", "target", "kwargs"),
    [
        ("lavfi:testsrc2=size=320x180", "testsrc2=size=320x180", {"f": "lavfi", "re": None}),
        ("srt://127.0.0.1:9000?mode=listener", "srt://127.0.0.1:9000?mode=listener", {}),
        ("udp://239.0.0.1:1234", "udp://239.0.0.1:1234", {}),
    ],
)
def test_source_specs(spec: str, target: str, kwargs: dict[str, object]) -> None:
    live = parse_source_spec(spec)
    assert live.target == target and live.input_kwargs() == kwargs


def test_a_file_is_paced_at_real_time_and_cannot_pose_as_an_option() -> None:
    live = parse_source_spec("-in.mp4")
    assert live.target.startswith("file:/") and live.input_kwargs() == {"re": None}
    assert live.input_kwargs(pace=False) == {}


@pytest.mark.parametrize("spec", ["", "lavfi:", "ftp://host/x", "gopher://x"])
def test_bad_specs_say_why(spec: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_source_spec(spec)


@pytest.mark.parametrize(
    ("now", "seg", "slot"),
    [(100.0, 2.0, 51), (101.7, 2.0, 51), (101.85, 2.0, 52), (5.0, 1.0, 6)],
)
def test_first_slot_is_the_next_boundary_with_room_to_start(now, seg, slot) -> None:
    assert first_slot(now, seg) == slot
    assert slot_time(slot, seg) >= now + seg / 10 - 1e-9


def test_two_pipelines_started_apart_agree_on_numbers() -> None:
    """Whenever each starts, both start on boundaries of the same epoch grid."""
    a, b = first_slot(1000.3, 2.0), first_slot(1003.1, 2.0)
    assert slot_time(a, 2.0) == 1002.0 and slot_time(b, 2.0) == 1004.0


def test_live_options_number_by_msn_on_the_epoch(tmp_path: Path) -> None:
    video = VideoStream(0, "h264", 640, 360, 1.0, 30.0, 0)
    source = Source("x", 0.0, video, None)
    rung = plan((360,), Geometry(640, 360))[0]
    opts = live_output_options(rung, source, EncodeOptions(segment_seconds=2.0), tmp_path, 900)
    assert opts["start_number"] == 900 and opts["output_ts_offset"] == "1800.000000"
    assert opts["hls_segment_filename"].endswith("360p/seg_%d.m4s")
    assert "temp_file" in opts["hls_flags"] and "hls_playlist_type" not in opts
    assert opts["hls_segment_options"] == "movflags=+frag_discont"
    assert opts["force_key_frames"] == "expr:gte(t,n_forced*2)"
