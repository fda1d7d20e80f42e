"""The summary `vcdn up` prints (onebox.summary), pure: it says what happened, no more."""

from __future__ import annotations

from typing import Any

from onebox.summary import render_summary


def data(ok: bool = True, failed: list[str] | None = None) -> dict[str, Any]:
    return {
        "title": "demo",
        "elapsed_s": 9.5,
        "play": {
            "ok": ok, "urls": ["http://127.0.0.10:1/s/t/demo/master.m3u8"],
            "first_appliance": "a1", "ffmpeg_ok": ok, "ffmpeg_seconds": 0.4,
            "ffmpeg_error": "" if ok else "Server returned 403 Forbidden",
            "rendition": "720p", "segments": 9, "bytes": 10_710_000, "failovers": 0,
            "failed": failed or [],
            "by_appliance": {"a1": {"segments": 9, "bytes": 10_710_000}},
        },
        "appliances": [
            {"id": "a1", "site": "site-a", "url": "u", "state": "healthy",
             "requests": {"hit": 30, "miss": 31}, "sent_bytes": 24_080_000,
             "fill_bytes": 20_750_000, "cache_bytes": 20_750_000, "hit_ratio": 0.492},
            {"id": "a3", "site": "site-b", "url": "u", "state": "healthy",
             "requests": {}, "sent_bytes": 0, "fill_bytes": 0, "cache_bytes": 0,
             "hit_ratio": None},
        ],
        "dns": ";; ANSWER SECTION:\nedge.cdn.example.\t20\tIN\tA\t127.0.0.10",
        "pages": {"player": "P", "dashboard": "D", "playback_api": "B", "control_api": "C"},
    }


def test_a_clean_play_names_the_appliance_the_bytes_and_the_pages() -> None:
    text = render_summary(data())
    assert "title 'demo' PLAYED through the CDN" in text
    assert "served by a1" in text and "from a1: 9 segments, 10.71 MB" in text
    assert "  a1   site-a  healthy      30     31       49%" in text
    assert "  a3   site-b  healthy       0      0         -" in text  # no requests, no ratio
    assert "fleet hit ratio: 49% (30 hits, 31 misses" in text
    assert "\tIN\tA\t127.0.0.10" in text
    assert "player:     P" in text and "dashboard:  D" in text


def test_a_failed_play_says_so_and_lists_what_failed() -> None:
    text = render_summary(data(ok=False, failed=["720p/seg_00003.m4s"]))
    assert "did NOT play cleanly" in text
    assert "FAILED (Server returned 403 Forbidden)" in text
    assert "FAILED: ['720p/seg_00003.m4s']" in text


def test_with_tls_it_says_where_the_certificates_came_from() -> None:
    text = render_summary({**data(), "tls": "appliance certificates came from ACME (pebble)"})
    assert "TLS: appliance certificates came from ACME (pebble)\n(all up in" in text
    assert "TLS:" not in render_summary(data())
