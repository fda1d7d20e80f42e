"""Probing sources: what is accepted, and the one-line reason for everything refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packager.probe import parse_source, probe_source
from tests.packager.conftest import make_source
from vcdn.errors import MediaError

VIDEO = {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "sample_aspect_ratio": "1:1", "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001"}
AUDIO = {"index": 1, "codec_type": "audio", "codec_name": "aac", "channels": 2,
         "sample_rate": "48000"}


def probe_json(*streams: dict, duration: str | None = "12.5") -> dict:
    fmt = {} if duration is None else {"duration": duration}
    return {"streams": list(streams), "format": fmt}


def test_parse_source_reads_duration_and_both_streams() -> None:
    s = parse_source(probe_json(VIDEO, AUDIO), "in.mp4")
    assert s.duration == 12.5
    assert (s.video.width, s.video.height, s.video.index) == (1920, 1080, 0)
    assert s.video.fps == pytest.approx(29.97, abs=1e-3)
    assert s.audio is not None and s.audio.index == 1 and s.audio.sample_rate == 48000


def test_a_quarter_turn_swaps_the_displayed_width_and_height() -> None:
    rotated = {**VIDEO, "side_data_list": [{"side_data_type": "Display Matrix",
                                            "rotation": -90}]}
    g = parse_source(probe_json(rotated), "phone.mp4").video.geometry
    assert (g.width, g.height) == (1080, 1920)


def test_cover_art_is_not_a_video_stream() -> None:
    cover = {**VIDEO, "codec_name": "mjpeg", "disposition": {"attached_pic": 1}}
    with pytest.raises(MediaError, match="has no video stream"):
        parse_source(probe_json(AUDIO, cover), "song.m4a")


def test_the_first_real_video_stream_is_chosen_after_cover_art() -> None:
    cover = {**VIDEO, "index": 0, "disposition": {"attached_pic": 1}}
    s = parse_source(probe_json(cover, {**VIDEO, "index": 2}), "in.mkv")
    assert s.video.index == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (probe_json(AUDIO), "Source 'x' has no video stream; vcdn package needs one."),
        (probe_json(VIDEO, duration=None), "no known duration"),
        (probe_json(VIDEO, duration="N/A"), "no known duration"),
        (probe_json({**VIDEO, "width": 0}), "without a picture size"),
        (probe_json({**VIDEO, "avg_frame_rate": "0/0", "r_frame_rate": "0/0"}), "frame rate"),
        ({}, "has no video stream"),
    ],
)
def test_parse_source_refuses_unusable_media_with_a_reason(data: dict, reason: str) -> None:
    with pytest.raises(MediaError, match=reason.replace("(", r"\(")):
        parse_source(data, "x")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    text = d / "notes.mp4"
    text.write_text("this is a text file, not a video\n")
    empty = d / "empty.mp4"
    empty.touch()
    audio = make_source(d / "audio.m4a", seconds=1, video=False)
    fifo = d / "pipe.mp4"
    os.mkfifo(fifo)
    return {"text": text, "empty": empty, "audio": audio, "missing": d / "missing.mp4", "dir": d,
            "fifo": fifo}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text", "is not a media file ffprobe can read (Invalid data found"),
        ("empty", "is empty (0 bytes)."),
        ("audio", "has no video stream; vcdn package needs one."),
        ("missing", "does not exist."),
        ("dir", "is a directory, not a video file."),
        ("fifo", "is not a regular file."),
    ],
)
def test_probe_source_refuses_bad_files_with_one_line(
    bad_files: dict[str, Path], name: str, message: str
) -> None:
    with pytest.raises(MediaError) as info:
        probe_source(bad_files[name])
    text = str(info.value)
    assert text.startswith(f"Source '{bad_files[name]}' ") and message in text
    assert "\n" not in text


def test_file_names_that_look_like_options_or_protocols_are_still_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_source(tmp_path / "-i.mp4", seconds=1, size="64x48", audio=False)
    (tmp_path / "http:x.mp4").symlink_to(tmp_path / "-i.mp4")
    monkeypatch.chdir(tmp_path)
    assert probe_source(Path("-i.mp4")).video.width == 64
    assert probe_source(Path("http:x.mp4")).video.width == 64
