"""Media types and Cache-Control by path."""

from __future__ import annotations

import pytest

from vcdn.httpserve.media import IMMUTABLE, LIVE_PLAYLIST, VOD_PLAYLIST, cache_control, media_type


@pytest.mark.parametrize(
    ("path", "ctype", "cc"),
    [
        ("master.m3u8", "application/vnd.apple.mpegurl", VOD_PLAYLIST),
        ("720p/index.m3u8", "application/vnd.apple.mpegurl", VOD_PLAYLIST),
        ("720p/init.mp4", "video/mp4", IMMUTABLE),
        ("720p/seg_00001.m4s", "video/mp4", IMMUTABLE),
        ("720p/media.mp4", "video/mp4", IMMUTABLE),
        ("720p/seg_00001.TS", "video/mp2t", IMMUTABLE),
        ("manifest.json", "application/json", "public, max-age=60"),
        ("README", "application/octet-stream", "public, max-age=3600"),
        (".hidden", "application/octet-stream", "public, max-age=3600"),
    ],
)
def test_types_and_cache_policy(path: str, ctype: str, cc: str) -> None:
    assert media_type(path) == ctype
    assert cache_control(path) == cc


def test_live_playlists_are_short_lived_but_segments_stay_immutable() -> None:
    assert cache_control("a/index.m3u8", live=True) == LIVE_PLAYLIST
    assert cache_control("a/seg_1.m4s", live=True) == IMMUTABLE
