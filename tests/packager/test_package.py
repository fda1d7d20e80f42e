"""End to end with real ffmpeg: what `package` publishes, checked with independent tools
(ffprobe, ffmpeg decoding, the m3u8 library) against RFC 8216 and the DESIGN layout."""

from __future__ import annotations

import hashlib
import math
import subprocess
from datetime import datetime
from pathlib import Path

import m3u8
import pytest

from packager.publish import STAGING
from tests.packager.conftest import LADDER, SEGMENT_S, SOURCE_S, Packaged, ffprobe
from vcdn.schemas import TitleManifest, decode

pytestmark = pytest.mark.slow

VARIANTS = {
    "fmp4": {"fmt": "fmp4"},
    # ultrafast makes x264 write Constrained Baseline: CODECS must follow what was encoded.
    "ts": {"fmt": "ts", "preset": "ultrafast"},
    "fmp4-single": {"fmt": "fmp4", "single_file": True},
    "ts-single": {"fmt": "ts", "single_file": True},
}
# ITU-T H.264 Annex A profile_idc for the names ffprobe prints (an independent table).
PROFILE_IDC = {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100}


@pytest.fixture(scope="module", params=list(VARIANTS))
def title(request: pytest.FixtureRequest, package_once) -> Packaged:
    return package_once(**VARIANTS[request.param])


@pytest.fixture(scope="module", params=["fmp4-single", "ts-single"])
def single_title(request: pytest.FixtureRequest, package_once) -> Packaged:
    return package_once(**VARIANTS[request.param])


@pytest.fixture(scope="module")
def silent(package_once) -> Packaged:
    # 1080 and 720 are taller than the 240-line source: they must be dropped.
    return package_once("silent", ladder=(1080, 720, 240, 144))


def media_playlists(p: Packaged) -> dict[str, m3u8.M3U8]:
    return {r.name: m3u8.load(str(p.dir / r.playlist)) for r in p.result.manifest.renditions}


def video_keyframes(playlist: Path) -> list[float]:
    data = ffprobe(playlist, "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags")
    return [float(pk["pts_time"]) for pk in data["packets"] if "K" in pk["flags"]]


def test_layout_is_the_one_in_the_design(title: Packaged) -> None:
    names = {p.relative_to(title.dir).as_posix() for p in title.dir.rglob("*") if p.is_file()}
    assert {"master.m3u8", "manifest.json"} <= names
    opts = title.result.manifest
    for height in LADDER:
        d = f"{height}p"
        assert f"{d}/index.m3u8" in names
        if opts.single_file:
            assert f"{d}/media.{'mp4' if opts.format == 'fmp4' else 'ts'}" in names
            assert not any(n.startswith(f"{d}/seg_") for n in names)
        elif opts.format == "fmp4":
            assert {f"{d}/init.mp4", f"{d}/seg_00001.m4s"} <= names
        else:
            assert f"{d}/seg_00001.ts" in names
            assert f"{d}/init.mp4" not in names


def test_master_playlist_parses_and_describes_every_rendition(title: Packaged) -> None:
    master = m3u8.load(str(title.dir / "master.m3u8"))
    assert master.is_variant and master.is_independent_segments
    media = media_playlists(title)
    assert master.version == max(pl.version for pl in media.values())
    assert [v.uri for v in master.playlists] == [f"{h}p/index.m3u8" for h in LADDER]
    for variant in master.playlists:
        info = variant.stream_info
        stream = ffprobe(title.dir / variant.uri, "-show_streams")["streams"]
        video = next(s for s in stream if s["codec_type"] == "video")
        assert info.resolution == (video["width"], video["height"])
        assert info.frame_rate == pytest.approx(30.0)
        assert 0 < info.average_bandwidth <= info.bandwidth


def test_codecs_are_the_rfc6381_strings_of_what_ffprobe_decodes(title: Packaged) -> None:
    master = m3u8.load(str(title.dir / "master.m3u8"))
    for variant in master.playlists:
        streams = ffprobe(title.dir / variant.uri, "-show_streams")["streams"]
        if title.result.manifest.format == "fmp4":
            # fMP4 keeps the audio in its own rendition, the variant's audio group.
            assert [s["codec_type"] for s in streams] == ["video"]
            assert variant.media[0].type == "AUDIO" and variant.media[0].uri
            streams += ffprobe(title.dir / variant.media[0].uri, "-show_streams")["streams"]
        video = next(s for s in streams if s["codec_type"] == "video")
        audio = next(s for s in streams if s["codec_type"] == "audio")
        avc, aac = variant.stream_info.codecs.split(",")
        assert avc.startswith("avc1.") and len(avc) == 11
        assert int(avc[5:7], 16) == PROFILE_IDC[video["profile"]]
        assert int(avc[9:11], 16) == video["level"]
        if video["profile"] == "Constrained Baseline":
            assert int(avc[7:9], 16) & 0x40  # constraint_set1_flag
        assert audio["profile"] == "LC" and aac == "mp4a.40.2"


def test_media_playlists_follow_rfc8216(title: Packaged) -> None:
    for pl in media_playlists(title).values():
        assert pl.playlist_type == "vod" and pl.is_endlist and pl.is_independent_segments
        assert pl.segments
        for seg in pl.segments:
            assert seg.duration > 0
            # §4.3.3.1: every EXTINF, rounded to the nearest integer, <= the target duration.
            assert math.floor(seg.duration + 0.5) <= pl.target_duration
        # §7: floating-point EXTINF needs version 3, BYTERANGE 4, EXT-X-MAP (not I-frame) 6.
        needed = 3
        if any(seg.byterange for seg in pl.segments):
            needed = 4
        if pl.segment_map:
            needed = 6
        assert pl.version >= needed


def test_every_rendition_decodes_with_ffmpeg(title: Packaged) -> None:
    for r in title.result.manifest.renditions:
        run = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", str(title.dir / r.playlist), "-f", "null",
             "-"],
            capture_output=True, text=True, timeout=60,
        )
        assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_duration_matches_the_source_within_one_segment(title: Packaged) -> None:
    assert abs(title.result.manifest.duration - SOURCE_S) <= SEGMENT_S
    for r in title.result.manifest.renditions:
        probed = float(ffprobe(title.dir / r.playlist, "-show_format")["format"]["duration"])
        assert abs(probed - SOURCE_S) <= SEGMENT_S


def test_segment_boundaries_are_identical_and_start_with_keyframes(title: Packaged) -> None:
    playlists = media_playlists(title)
    durations = {name: [s.duration for s in pl.segments] for name, pl in playlists.items()}
    first = next(iter(durations.values()))
    assert all(d == first for d in durations.values())
    assert len(first) == math.ceil(SOURCE_S / SEGMENT_S)
    keyframes = {
        r.name: video_keyframes(title.dir / r.playlist) for r in title.result.manifest.renditions
    }
    reference = next(iter(keyframes.values()))
    assert all(k == reference for k in keyframes.values())
    # Exactly one keyframe per segment, at its start: no scene-cut keyframes in between.
    starts = [sum(first[:i]) for i in range(len(first))]
    assert len(reference) == len(starts)
    offset = reference[0] - starts[0]
    assert [round(k - offset, 3) for k in reference] == [round(s, 3) for s in starts]


def test_single_file_byte_ranges_tile_the_media_file(single_title: Packaged) -> None:
    title = single_title
    for name, pl in media_playlists(title).items():
        media = title.dir / name / pl.segments[0].uri
        data = media.read_bytes()
        ranges = []
        if pl.segment_map:
            length, offset = pl.segment_map[0].byterange.split("@")
            ranges.append((int(offset), int(length)))
        for seg in pl.segments:
            assert seg.uri == media.name
            length, offset = seg.byterange.split("@")
            ranges.append((int(offset), int(length)))
        position = 0
        for offset, length in ranges:
            assert offset == position and length > 0
            position += length
        assert position == len(data)
        for offset, _ in ranges[1 if pl.segment_map else 0 :]:
            if title.result.manifest.format == "ts":
                assert data[offset] == 0x47  # MPEG-TS sync byte
            else:
                # ISO BMFF: a media segment opens with styp, sidx or moof.
                assert data[offset + 4 : offset + 8] in (b"moof", b"styp", b"sidx")


def test_manifest_lists_every_file_with_its_size_and_sha256(title: Packaged) -> None:
    import json

    doc = decode(TitleManifest, json.loads((title.dir / "manifest.json").read_text()))
    assert doc == title.result.manifest
    on_disk = sorted(
        p.relative_to(title.dir).as_posix()
        for p in title.dir.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    )
    assert [f.path for f in doc.files] == on_disk
    for f in doc.files:
        data = (title.dir / f.path).read_bytes()
        assert f.size == len(data) and f.sha256 == hashlib.sha256(data).hexdigest()
    assert [r.name for r in doc.renditions] == [f"{h}p" for h in LADDER]
    assert doc.segment_seconds == SEGMENT_S and doc.title == title.dir.name
    assert datetime.fromisoformat(doc.created_at.replace("Z", "+00:00")).utcoffset().seconds == 0


def test_success_leaves_nothing_in_staging(title: Packaged) -> None:
    assert list((title.root / STAGING).iterdir()) == []
    assert sorted(p.name for p in title.root.iterdir()) == sorted([STAGING, title.dir.name])


def test_source_without_audio_gives_video_only_renditions(silent: Packaged) -> None:
    master = m3u8.load(str(silent.dir / "master.m3u8"))
    for variant in master.playlists:
        assert "mp4a" not in variant.stream_info.codecs
        assert variant.stream_info.codecs.startswith("avc1.")
        streams = ffprobe(silent.dir / variant.uri, "-show_streams")["streams"]
        assert [s["codec_type"] for s in streams] == ["video"]


def test_rungs_taller_than_the_source_are_dropped(silent: Packaged) -> None:
    assert [r.name for r in silent.result.manifest.renditions] == ["240p", "144p"]
    assert not (silent.dir / "1080p").exists() and not (silent.dir / "720p").exists()


def test_width_keeps_the_display_aspect_ratio_and_is_even(package_once) -> None:
    p = package_once("anamorphic", ladder=(288, 200, 144))
    source = ffprobe(p.source, "-show_streams")["streams"][0]
    num, den = map(int, source["sample_aspect_ratio"].split(":"))
    source_dar = source["width"] * num / den / source["height"]
    for r in p.result.manifest.renditions:
        video = ffprobe(p.dir / r.playlist, "-show_streams")["streams"][0]
        assert (video["width"], video["height"]) == (r.width, r.height)
        assert video["width"] % 2 == 0 and video["height"] % 2 == 0
        assert video.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")
        assert video["width"] / video["height"] == pytest.approx(source_dar, rel=0.01)


def test_a_rotated_source_is_laddered_as_it_is_displayed(package_once) -> None:
    p = package_once("rotated", ladder=(480, 320, 160))
    assert [(r.width, r.height) for r in p.result.manifest.renditions] == [(240, 320),
                                                                          (120, 160)]
    for r in p.result.manifest.renditions:
        video = ffprobe(p.dir / r.playlist, "-show_streams")["streams"][0]
        assert (video["width"], video["height"]) == (r.width, r.height)
