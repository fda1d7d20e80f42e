"""The DASH manifest: the pure writer, then real packaged titles checked independently
(the ISO MPD schema via lxml, the mpegdash parser, ffprobe/ffmpeg's DASH demuxer)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from packager.dash import (
    PROFILE_FULL,
    PROFILE_LIVE,
    Addressing,
    DashError,
    Track,
    addressing,
    frame_rate,
    mpd,
    timeline,
)
from tests.packager.conftest import LADDER, Packaged, ffprobe
from tests.packager.dashcheck import mpd_files, schema_errors
from vcdn.hlsplaylist import parse_media

FMP4 = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.000000,
seg_00001.m4s
#EXTINF:2.000000,
seg_00002.m4s
#EXTINF:0.500000,
seg_00003.m4s
#EXT-X-ENDLIST
"""
SINGLE = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MAP:URI="media.mp4",BYTERANGE="800@0"
#EXTINF:2.0,
#EXT-X-BYTERANGE:1000@800
media.mp4
#EXTINF:1.5,
#EXT-X-BYTERANGE:500
media.mp4
#EXT-X-ENDLIST
"""


def video_track(a: Addressing, durations: tuple[float, ...] = (2.0, 2.0, 0.5)) -> Track:
    return Track("240p", "video", 400_000, "avc1.64000d", durations, a, width=320,
                 height=240, frame_rate=29.97)


def audio_track(a: Addressing) -> Track:
    return Track("audio", "audio", 96_000, "mp4a.40.2", (2.0, 2.0, 0.5), a,
                 sampling_rate=48000, channels=2)


def test_template_addressing_follows_the_files_ffmpeg_named() -> None:
    a = addressing("240p", "240p/seg_%05d.m4s", parse_media(FMP4))
    assert a == Addressing("template", "240p/init.mp4", "240p/seg_$Number%05d$.m4s", 1)


def test_a_gap_in_the_numbering_is_refused_rather_than_templated() -> None:
    with pytest.raises(DashError, match="seg_00003"):
        addressing("240p", "240p/seg_%05d.m4s", parse_media(FMP4.replace("seg_00003", "seg_00004")))


def test_mpeg_ts_has_no_dash_manifest() -> None:
    ts = FMP4.replace('#EXT-X-MAP:URI="init.mp4"\n', "").replace(".m4s", ".ts")
    with pytest.raises(DashError, match="fMP4"):
        addressing("240p", "240p/seg_%05d.ts", parse_media(ts))


def test_single_file_addressing_is_the_playlists_byte_ranges() -> None:
    a = addressing("240p", "240p/media.mp4", parse_media(SINGLE))
    assert a.kind == "ranges" and a.init == "240p/media.mp4"
    assert a.init_range == (0, 800) and a.ranges == ((800, 1000), (1800, 500))


def test_timeline_rounds_start_times_so_no_drift_accumulates() -> None:
    # 300 segments of 1/3 s: rounding each duration alone would drift by 100 ms.
    runs = timeline([1 / 3] * 300)
    total = sum(d * (r + 1) for _, d, r in runs)
    assert total == 100_000
    assert timeline([2.0, 2.0, 2.0, 0.5]) == [(0, 2000, 2), (6000, 500, 0)]


@pytest.mark.parametrize(("fps", "text"), [(30.0, "30"), (29.97, "30000/1001"),
                                          (23.976, "24000/1001"), (25.0, "25"),
                                          (12.5, "25/2")])
def test_frame_rate_is_the_mpd_frame_rate_type(fps: float, text: str) -> None:
    assert frame_rate(fps) == text


def test_written_mpd_is_schema_valid_in_both_addressing_modes() -> None:
    tmpl = addressing("240p", "240p/seg_%05d.m4s", parse_media(FMP4))
    aud = addressing("audio", "audio/seg_%05d.m4s", parse_media(FMP4))
    text = mpd([video_track(tmpl)], audio_track(aud), duration=4.5, segment_seconds=2)
    assert schema_errors(text) == []
    assert PROFILE_LIVE in text and 'frameRate="30000/1001"' in text
    single = addressing("240p", "240p/media.mp4", parse_media(SINGLE))
    text = mpd([video_track(single, (2.0, 1.5))], None, duration=3.5, segment_seconds=2)
    assert schema_errors(text) == []
    assert PROFILE_FULL in text and 'mediaRange="1800-2299"' in text


def test_the_schema_check_can_fail() -> None:
    tmpl = addressing("240p", "240p/seg_%05d.m4s", parse_media(FMP4))
    text = mpd([video_track(tmpl)], None, duration=4.5, segment_seconds=2)
    assert schema_errors(text.replace('type="static"', 'type="sometimes"'))


def test_mixed_addressing_and_no_video_are_refused() -> None:
    tmpl = addressing("240p", "240p/seg_%05d.m4s", parse_media(FMP4))
    single = addressing("audio", "audio/media.mp4", parse_media(SINGLE))
    with pytest.raises(DashError):
        mpd([video_track(tmpl)], audio_track(single), duration=4.5, segment_seconds=2)
    with pytest.raises(DashError):
        mpd([], None, duration=1, segment_seconds=2)


# --- real titles -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["fmp4", "fmp4-single"])
def packaged(request: pytest.FixtureRequest, package_once) -> Packaged:
    return package_once(fmt="fmp4", single_file=request.param == "fmp4-single")


def mpd_urls(p: Packaged) -> set[str]:
    """Every file the MPD refers to, from mpegdash's parse (not our writer's structures)."""
    return mpd_files(p.dir / "manifest.mpd")


@pytest.mark.slow
def test_packaged_mpd_is_schema_valid_and_describes_the_ladder(packaged: Packaged) -> None:
    text = (packaged.dir / "manifest.mpd").read_text()
    assert schema_errors(text) == []
    doc = MPEGDASHParser.parse(str(packaged.dir / "manifest.mpd"))
    assert doc.type == "static"
    video, audio = doc.periods[0].adaptation_sets
    assert video.content_type == "video" and audio.content_type == "audio"
    master = m3u8.load(str(packaged.dir / "master.m3u8"))
    assert [r.id for r in video.representations] == [f"{h}p" for h in LADDER]
    for rep, variant in zip(video.representations, master.playlists, strict=True):
        avc, aac = variant.stream_info.codecs.split(",")
        assert rep.codecs == avc and audio.representations[0].codecs == aac
        assert (rep.width, rep.height) == variant.stream_info.resolution
        assert rep.frame_rate == "30"
        # HLS BANDWIDTH covers video + audio; DASH states each track on its own.
        total = rep.bandwidth + audio.representations[0].bandwidth
        assert total == variant.stream_info.bandwidth
    presented = float(doc.media_presentation_duration[2:-1])
    assert abs(presented - packaged.result.manifest.duration) < 0.1


@pytest.mark.slow
def test_both_manifests_use_the_same_files_and_no_second_copy(packaged: Packaged) -> None:
    files = {f.path for f in packaged.result.manifest.files}
    assert "manifest.mpd" in files  # manifest.json lists it, so appliances fill it
    hls: set[str] = set()
    master = m3u8.load(str(packaged.dir / "master.m3u8"))
    for uri in [v.uri for v in master.playlists] + [m.uri for m in master.media]:
        pl = m3u8.load(str(packaged.dir / uri))
        base = Path(uri).parent
        hls.add((base / pl.segments[0].init_section.uri).as_posix())
        hls |= {(base / s.uri).as_posix() for s in pl.segments}
    assert mpd_urls(packaged) == hls
    media = sum(f.size for f in packaged.result.manifest.files)
    mpd_size = (packaged.dir / "manifest.mpd").stat().st_size
    # Disk with both manifests vs HLS alone: the MPD is the only extra file.
    assert media / (media - mpd_size) <= 1.01


@pytest.mark.slow
def test_ffmpeg_dash_demuxer_reads_and_decodes_the_mpd(package_once) -> None:
    # ffmpeg's DASH demuxer loops on SegmentList byte ranges (single-file mode), so this
    # reads the segment-template MPD; the single-file one is checked by schema and parser.
    p = package_once(fmt="fmp4")
    mpd_path = str((p.dir / "manifest.mpd").resolve())
    streams = ffprobe(Path(mpd_path), "-show_streams")["streams"]
    kinds = sorted((s["codec_type"], s.get("height")) for s in streams)
    assert kinds == sorted([("audio", None)] + [("video", h) for h in LADDER])
    run = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", mpd_path, "-map", "0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


@pytest.mark.slow
def test_mpeg_ts_titles_have_no_mpd(package_once) -> None:
    p = package_once(fmt="ts", preset="ultrafast")
    assert not (p.dir / "manifest.mpd").exists()
    assert all(not f.path.endswith(".mpd") for f in p.result.manifest.files)
