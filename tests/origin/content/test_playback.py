"""Real media through the origin: ffprobe and ffmpeg read an MP4 (with their own range
requests) and an fMP4 HLS title over HTTP, frame for frame."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import require_tool
from tests.origin.content.conftest import start_origin, stop

FRAMES = 20  # 2 s at 10 fps


@pytest.fixture(scope="module")
def media_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ffmpeg = require_tool("ffmpeg")
    root = tmp_path_factory.mktemp("media") / "store"
    title = root / "clip"
    (title / "v1").mkdir(parents=True)
    src = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac", "-b:a", "32k"]
    subprocess.run(
        [ffmpeg, "-v", "error", *src, *enc, str(title / "x.mp4")],
        check=True, timeout=60,
    )
    subprocess.run(
        [ffmpeg, "-v", "error", *src, *enc, "-f", "hls", "-hls_time", "1",
         "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
         "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", str(title / "v1" / "seg_%05d.m4s"),
         str(title / "v1" / "index.m3u8")],
        check=True, timeout=60,
    )
    (title / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=160x120,CODECS="avc1.42c00d,mp4a.40.2"\n'
        "v1/index.m3u8\n"
    )
    proc, url = start_origin(root)
    try:
        yield url
    finally:
        stop(proc)


def count_frames(url: str) -> int:
    ffprobe = require_tool("ffprobe")
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_frames",
         "-show_entries", "stream=nb_read_frames,codec_name", "-of", "json", url],
        check=True, capture_output=True, text=True, timeout=60,
    )
    stream = json.loads(out.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    return int(stream["nb_read_frames"])


@pytest.mark.slow
def test_ffprobe_reads_an_mp4_over_http(media_origin: str) -> None:
    assert count_frames(f"{media_origin}/v/clip/x.mp4") == FRAMES


@pytest.mark.slow
def test_ffmpeg_plays_an_hls_title_over_http(media_origin: str) -> None:
    """ffmpeg follows master → media playlist → init + segments, all from the origin."""
    assert count_frames(f"{media_origin}/v/clip/master.m3u8") == FRAMES
    ffmpeg = require_tool("ffmpeg")
    run = subprocess.run(
        [ffmpeg, "-v", "error", "-i", f"{media_origin}/v/clip/master.m3u8", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == ""
