"""The ABR ladder: parsing --ladder, never upscaling, even widths that keep the aspect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packager.ladder import (
    DEFAULT_HEIGHTS,
    MAX_HEIGHT,
    MIN_HEIGHT,
    Geometry,
    parse_ladder,
    plan,
    scaled_width,
    video_kbps,
)


@pytest.mark.parametrize(
    ("text", "heights"),
    [
        ("1080,720,480,360", (1080, 720, 480, 360)),
        ("360,1080", (1080, 360)),
        (" 720p , 480 ", (720, 480)),
        ("480,480,240", (480, 240)),
    ],
)
def test_parse_ladder_sorts_tallest_first_and_drops_duplicates(text: str, heights: tuple) -> None:
    assert parse_ladder(text) == heights


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a height"),
        ("720,,480", "not a height"),
        ("abc", "not a height"),
        ("-360", "not a height"),
        ("72.5", "not a height"),
        ("721", "odd"),
        ("8", "outside"),
        ("8640", "outside"),
    ],
)
def test_parse_ladder_rejects_bad_entries_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_ladder(text)


def test_default_ladder_on_a_1080p_source_keeps_every_rung_with_falling_bitrates() -> None:
    rungs = plan(DEFAULT_HEIGHTS, Geometry(1920, 1080, 1.0, 30.0))
    assert [(r.width, r.height) for r in rungs] == [(1920, 1080), (1280, 720), (854, 480),
                                                    (640, 360)]
    assert rungs[0].video_kbps == 5000
    kbps = [r.video_kbps for r in rungs]
    assert kbps == sorted(kbps, reverse=True) and len(set(kbps)) == len(kbps)
    assert [r.name for r in rungs] == ["1080p", "720p", "480p", "360p"]


def test_a_source_shorter_than_every_rung_becomes_the_single_rung() -> None:
    # An odd height rounds down to even; the width follows: 320 * 240 / 241 = 318.7 -> 318.
    rungs = plan(DEFAULT_HEIGHTS, Geometry(320, 241, 1.0, 25.0))
    assert [(r.width, r.height) for r in rungs] == [(318, 240)]


def test_anamorphic_pixels_widen_the_picture() -> None:
    # PAL 720x576 with 16:15 pixels is 768x576 on screen (4:3).
    assert scaled_width(Geometry(720, 576, 16 / 15, 25.0), 576) == 768


def test_higher_frame_rates_get_more_bits() -> None:
    assert video_kbps(1280, 720, 60) > video_kbps(1280, 720, 30) > video_kbps(1280, 720, 24)


geometries = st.builds(
    Geometry,
    width=st.integers(16, 7680),
    height=st.integers(16, 4320),
    sar=st.sampled_from([1.0, 16 / 15, 64 / 45, 8 / 9, 4 / 3, 0.75]),
    fps=st.sampled_from([23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0]),
)
ladders = st.lists(st.integers(MIN_HEIGHT // 2, MAX_HEIGHT // 2).map(lambda h: h * 2), min_size=1,
                   max_size=8)


@given(ladders, geometries)
def test_plan_never_upscales_and_sizes_are_even(heights: list[int], source: Geometry) -> None:
    rungs = plan(heights, source)
    assert rungs, "there is always at least one rung"
    for r in rungs:
        assert r.height <= source.height
        assert r.width % 2 == 0 and r.height % 2 == 0 and r.width >= 2
        assert r.video_kbps >= 100 and r.maxrate_kbps >= r.video_kbps
    kept = [h for h in heights if h <= source.height]
    if kept:
        assert [r.height for r in rungs] == sorted(set(kept), reverse=True)


@given(ladders, geometries)
def test_plan_keeps_the_display_aspect_ratio_within_rounding(
    heights: list[int], source: Geometry
) -> None:
    for r in plan(heights, source):
        # Rounding the width to an even number moves it by at most one pixel.
        exact = source.display_width * r.height / source.height
        assert abs(r.width - exact) <= 1.0 or r.width == 2
