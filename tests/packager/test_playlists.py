"""Media playlist parsing, RFC 8216 target-duration repair, bandwidths, master playlist."""

from __future__ import annotations

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from packager.playlists import (
    Variant,
    average_bitrate,
    fix_target_duration,
    master_playlist,
    peak_bitrate,
    required_target_duration,
)
from vcdn.hlsplaylist import Part, PlaylistError, parse_media

SINGLE_FILE = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="media.mp4",BYTERANGE="1372@0"
#EXTINF:2.000000,
#EXT-X-BYTERANGE:108496@1372
media.mp4
#EXTINF:2.000000,
#EXT-X-BYTERANGE:134202
media.mp4
#EXTINF:1.500000,
#EXT-X-BYTERANGE:120868@244070
media.mp4
#EXT-X-ENDLIST
"""


def test_parse_media_reads_map_segments_and_byte_ranges() -> None:
    pl = parse_media(SINGLE_FILE)
    assert (pl.version, pl.target_duration) == (7, 2)
    assert pl.init == Part("media.mp4", 0, 1372)
    assert [(s.duration, s.length, s.start) for s in pl.segments] == [
        (2.0, 108496, 1372),
        # RFC 8216 §4.3.2.2: no @offset means "right after the previous range".
        (2.0, 134202, 109868),
        (1.5, 120868, 244070),
    ]
    assert pl.duration == pytest.approx(5.5)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "EXTM3U"),
        ("#EXTM3U\n#EXTINF:2,\na.ts\n", "TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n", "no segment"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "no EXTINF"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:two\n#EXTINF:2,\na.ts\n", "TARGETDURATION 'two'"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:BYTERANGE=\"1@0\"\n", "no URI"),
    ],
)
def test_parse_media_refuses_what_is_not_a_vod_playlist(text: str, reason: str) -> None:
    with pytest.raises(PlaylistError, match=reason):
        parse_media(text)


def test_target_duration_is_raised_when_a_segment_rounds_above_it() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.5,\na.ts\n#EXTINF:1.9,\nb.ts\n"
    fixed = fix_target_duration(text)
    assert "#EXT-X-TARGETDURATION:3\n" in fixed
    assert required_target_duration(parse_media(fixed)) == 3
    assert fixed.replace(":3\n", ":2\n", 1) == text


def test_a_correct_target_duration_is_left_alone() -> None:
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.49,\na.ts\n"
    assert fix_target_duration(text) is text


def test_peak_is_the_densest_run_of_segments_near_the_target_duration() -> None:
    # Four 2 s segments, one of them twice as big: the peak is that segment's rate.
    durations = [2.0, 2.0, 2.0, 2.0]
    sizes = [250_000, 500_000, 250_000, 250_000]
    assert peak_bitrate(durations, sizes, target=2) == 2_000_000
    assert average_bitrate(durations, sizes) == 1_250_000


def test_peak_of_a_title_shorter_than_half_a_target_uses_its_segments() -> None:
    assert peak_bitrate([0.5], [10_000], target=4) == 160_000


def test_peak_needs_one_size_per_segment() -> None:
    with pytest.raises(ValueError):
        peak_bitrate([2.0, 2.0], [1], target=2)


@given(
    st.lists(
        st.tuples(st.floats(1.0, 2.0), st.integers(1, 10_000_000)), min_size=1, max_size=30
    )
)
def test_peak_is_never_below_the_average_when_segments_fit_the_target(segs: list) -> None:
    durations = [d for d, _ in segs]
    sizes = [s for _, s in segs]
    assert peak_bitrate(durations, sizes, target=2) >= average_bitrate(durations, sizes) - 1


def test_master_playlist_parses_with_m3u8_and_keeps_every_attribute() -> None:
    variants = [
        Variant("720p/index.m3u8", 3_100_000, 2_800_000, "avc1.64001f,mp4a.40.2", 1280, 720,
                29.97),
        Variant("360p/index.m3u8", 900_000, 800_000, "avc1.64001e", 640, 360, 29.97),
    ]
    text = master_playlist(variants, version=7)
    pl = m3u8.loads(text)
    assert pl.is_variant and pl.version == 7 and pl.is_independent_segments
    got = [
        (p.uri, p.stream_info.bandwidth, p.stream_info.average_bandwidth, p.stream_info.codecs,
         p.stream_info.resolution, p.stream_info.frame_rate)
        for p in pl.playlists
    ]
    assert got == [
        ("720p/index.m3u8", 3_100_000, 2_800_000, "avc1.64001f,mp4a.40.2", (1280, 720), 29.97),
        ("360p/index.m3u8", 900_000, 800_000, "avc1.64001e", (640, 360), 29.97),
    ]
    assert "FRAME-RATE=29.970" in text
