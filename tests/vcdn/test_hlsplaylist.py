"""The one pure HLS playlist reader (the packager's and the failover client's)."""

from __future__ import annotations

import pytest

from vcdn.errors import ClientError
from vcdn.hlsplaylist import Part, Segment, parse_attributes, parse_master, parse_media

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"
720p/index.m3u8
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000,
seg_00001.m4s
#EXTINF:2.5,
seg_00002.m4s
#EXT-X-ENDLIST
"""

SINGLE = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="media.mp4",BYTERANGE="800@0"
#EXTINF:4,
#EXT-X-BYTERANGE:1000@800
media.mp4
#EXTINF:4,
#EXT-X-BYTERANGE:500
media.mp4
#EXT-X-ENDLIST
"""


def test_attributes_keep_commas_inside_quoted_strings() -> None:
    attrs = parse_attributes('BANDWIDTH=1,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=2x2')
    assert attrs == {"BANDWIDTH": "1", "CODECS": "avc1.64001f,mp4a.40.2", "RESOLUTION": "2x2"}


def test_master_variants_come_highest_bandwidth_first() -> None:
    variants = parse_master(MASTER)
    assert [v.uri for v in variants] == ["720p/index.m3u8", "360p/index.m3u8"]
    assert variants[0].bandwidth == 3000000
    assert variants[0].codecs == "avc1.64001f,mp4a.40.2"


def test_media_playlist_lists_init_and_segments_in_order() -> None:
    media = parse_media(MEDIA)
    assert media.init == Part("init.mp4")
    assert [s.uri for s in media.segments] == ["seg_00001.m4s", "seg_00002.m4s"]
    assert media.durations == (4.0, 2.5)
    assert media.ended and media.target_duration == 4


def test_byteranges_follow_the_previous_range_when_no_offset_is_given() -> None:
    media = parse_media(SINGLE)
    assert media.init == Part("media.mp4", 0, 800)
    assert media.segments == (Segment("media.mp4", 800, 1000, 4.0),
                              Segment("media.mp4", 1800, 500, 4.0))
    assert media.segments[1].range_header == "bytes=1800-2299"
    assert Part("x").range_header is None


@pytest.mark.parametrize(
    ("text", "parser", "message"),
    [
        ("", parse_master, "#EXTM3U"),
        ("<html>", parse_media, "#EXTM3U"),
        ("#EXTM3U\n#EXT-X-VERSION:3\n", parse_master, "no variant"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=abc\nx.m3u8\n", parse_master, "BANDWIDTH"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:4\n", parse_media, "no segment"),
        ("#EXTM3U\n#EXTINF:1,\nseg.m4s\n", parse_media, "no EXT-X-TARGETDURATION"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2.5\n#EXTINF:1,\na.ts\n", parse_media, "whole"),
        ("#EXTM3U\nseg.m4s\n", parse_media, "no EXTINF"),
        ("#EXTM3U\n#EXTINF:x,\nseg.m4s\n", parse_media, "duration"),
        ("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:12\nm.mp4\n", parse_media, "no earlier range"),
        ("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:a@b\nm.mp4\n", parse_media, "LENGTH"),
        ('#EXTM3U\n#EXT-X-MAP:BYTERANGE="1@0"\n', parse_media, "no URI"),
    ],
)
def test_bad_playlists_raise_a_client_error_that_says_why(text, parser, message) -> None:
    with pytest.raises(ClientError, match=message):
        parser(text)
