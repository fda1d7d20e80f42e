"""ffmpeg plays a real HLS title through the edge (signed URLs, relative URIs) and gets
exactly what it gets from the origin directly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.app import make_app
from origin.content.app import make_app as make_origin_app
from origin.content.settings import OriginSettings
from tests.conftest import require_tool
from tests.edge.conftest import edge_settings, sign

pytestmark = pytest.mark.slow
TITLE = "tiny"


async def _run(*args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out


async def _package(root: Path) -> None:
    """A 2-second fMP4 HLS title with one rendition, written by ffmpeg itself."""
    ffmpeg = require_tool("ffmpeg")
    out = root / TITLE / "360p"
    out.mkdir(parents=True)
    await _run(
        ffmpeg,
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=192x108:rate=10:duration=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "10",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-hls_segment_filename",
        str(out / "seg_%05d.m4s"),
        str(out / "index.m3u8"),
    )
    (root / TITLE / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=192x108,CODECS="avc1.42c00a"\n'
        "360p/index.m3u8\n"
    )


async def test_ffmpeg_through_the_edge(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "origin"
    await _package(root)
    origin = await aiohttp_server(make_origin_app(OriginSettings(root=root)))
    edge = await aiohttp_server(
        make_app(edge_settings(tmp_path, str(origin.make_url("")).rstrip("/")))
    )
    ffmpeg = require_tool("ffmpeg")
    via_edge = str(edge.make_url(f"/s/{sign(TITLE)}/{TITLE}/master.m3u8"))
    direct = str(origin.make_url(f"/v/{TITLE}/master.m3u8"))
    cmd = [ffmpeg, "-v", "error", "-i"]
    tail = ["-map", "0:v", "-c", "copy", "-f", "framemd5", "-"]
    from_edge = await _run(*cmd, via_edge, *tail)
    from_origin = await _run(*cmd, direct, *tail)
    assert from_edge == from_origin
    assert from_edge.count(b"\n0,") >= 15  # ~20 frames were copied
    again = await _run(*cmd, via_edge, *tail)  # now all hits
    assert again == from_origin
