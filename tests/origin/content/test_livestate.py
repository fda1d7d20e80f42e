"""Which copy of a live segment the origin keeps, and the playlists built from them."""

from __future__ import annotations

import pytest

from origin.content.fmp4 import BoxError, SegmentTiming, Track, boxes, parse_init, parse_segment
from origin.content.livestate import Kept, expired, in_window, judge, media_playlist, pdt

SEG = 2.0


def timing(start: float, duration: float = SEG, sync: bool = True) -> SegmentTiming:
    return SegmentTiming(start, duration, 60, sync)


def kept(*msns: int) -> dict[int, Kept]:
    return {m: Kept(m, f"seg_{m}.m4s", m * SEG, SEG, 1000) for m in msns}


@pytest.mark.parametrize(
    ("msn", "t", "previous", "why"),
    [
        (10, timing(20.0), None, None),
        (10, timing(20.0), Kept(9, "seg_9.m4s", 18.0, 2.0, 1), None),
        (10, timing(20.02), Kept(9, "seg_9.m4s", 18.0, 2.0, 1), None),  # within a frame
        (10, timing(20.0, sync=False), None, "keyframe"),
        (10, timing(20.0, duration=0.0), None, "lasts"),
        (10, timing(20.0, duration=9.0), None, "lasts"),
        (10, timing(26.0), None, "shared epoch"),  # numbered for another moment
        (10, timing(20.5), Kept(9, "seg_9.m4s", 18.0, 2.0, 1), "jump"),
    ],
)
def test_judge(msn: int, t: SegmentTiming, previous: Kept | None, why: str | None) -> None:
    verdict = judge(msn, t, SEG, previous)
    assert (verdict is None) if why is None else (why in (verdict or ""))


def test_live_playlist_offers_the_window_with_dates() -> None:
    text = media_playlist(kept(*range(100, 110)), SEG, 6.0, ended=False)
    assert "#EXT-X-MEDIA-SEQUENCE:107" in text
    assert [ln for ln in text.splitlines() if ln.startswith("seg_")] == [
        "seg_107.m4s", "seg_108.m4s", "seg_109.m4s"
    ]
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == 3
    assert "#EXT-X-TARGETDURATION:2" in text and "#EXT-X-ENDLIST" not in text


def test_a_hole_neither_pipeline_filled_is_a_gap_not_a_renumbering() -> None:
    text = media_playlist(kept(1, 2, 4), SEG, None, ended=True)
    lines = text.splitlines()
    assert lines[lines.index("seg_3.m4s") - 2] == "#EXT-X-GAP"
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and "#EXT-X-PLAYLIST-TYPE:VOD" in text


def test_window_and_expiry() -> None:
    k = kept(*range(10))
    assert in_window(k, 4.0) == [8, 9]
    assert expired(k, 4.0, 4.0) == [0, 1, 2, 3, 4, 5]
    assert in_window({}, 4.0) == [] and expired({}, 4.0, 1.0) == []


def test_pdt_is_rfc3339_utc_milliseconds() -> None:
    assert pdt(1_000_000.25) == "1970-01-12T13:46:40.250Z"


@pytest.mark.parametrize("junk", [b"", b"\0\0\0\x01moov", b"\0\0\0\x20moov" + b"\0" * 8])
def test_junk_is_not_an_init_segment(junk: bytes) -> None:
    with pytest.raises(BoxError):
        parse_init(junk)


def test_box_sizes_that_overrun_are_refused() -> None:
    with pytest.raises(BoxError):
        list(boxes(b"\0\0\0\xffmdat" + b"\0" * 10))
    with pytest.raises(BoxError):
        parse_segment(b"\0\0\0\x08moof", Track(1, 90000, "vide"))
