"""RFC 9111 rules, pure: storability, lifetimes, Age, request directives, 304 merging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import freshness as f

NOW = 1_700_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"  # == NOW


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=60", {"max-age": "60"}),
        ("Max-Age=60, No-Cache", {"max-age": "60", "no-cache": None}),
        ('no-cache="Set-Cookie, X", max-age=5', {"no-cache": "Set-Cookie, X", "max-age": "5"}),
        ("", {}),
        (" , ,", {}),
        ("max-age=1, max-age=2", {"max-age": "1"}),
    ],
)
def test_parse_cache_control(value: str, expected: dict[str, str | None]) -> None:
    assert f.parse_cache_control(value) == expected


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"Cache-Control": "max-age=60"}, 60),
        ({"Cache-Control": "s-maxage=10, max-age=60"}, 10),  # §5.2.2.10 shared caches
        ({"Cache-Control": "max-age=abc"}, 0),
        ({"Expires": "Tue, 14 Nov 2023 22:14:20 GMT", "Date": DATE}, 60),
        ({"Expires": "0", "Date": DATE}, 0),  # §5.3 invalid Expires = expired
        ({"Last-Modified": "Tue, 14 Nov 2023 12:13:20 GMT", "Date": DATE}, 3600),  # 10% of 10 h
        ({"Cache-Control": "public, max-age=31536000, immutable"}, 31536000),
        ({}, 0),
    ],
)
def test_lifetime(headers: dict[str, str], lifetime: float) -> None:
    assert f.policy(headers, NOW).lifetime == lifetime


@pytest.mark.parametrize(
    ("status", "req", "resp", "ok"),
    [
        (200, {}, {"Cache-Control": "max-age=60"}, True),
        (200, {}, {"Cache-Control": "no-store"}, False),
        (200, {"Cache-Control": "no-store"}, {}, False),
        (200, {}, {"Cache-Control": "private"}, False),
        (200, {"Authorization": "x"}, {"Cache-Control": "max-age=60"}, False),
        (200, {"Authorization": "x"}, {"Cache-Control": "public, max-age=60"}, True),
        (200, {}, {"Vary": "Accept-Encoding"}, True),
        (200, {}, {"Vary": "*"}, False),
        (206, {}, {"Content-Range": "bytes 0-1/2"}, False),
        (404, {}, {}, False),
    ],
)
def test_storable(status: int, req: dict[str, str], resp: dict[str, str], ok: bool) -> None:
    assert f.storable("GET", status, req, resp)[0] is ok


def test_age_follows_section_4_2_3() -> None:
    """corrected_initial_age = max(apparent_age, Age + response_delay); then resident time."""
    headers = {"Date": DATE, "Age": "30"}
    initial = f.initial_age(headers, request_time=NOW + 1, response_time=NOW + 3)
    assert initial == 32  # 30 + 2 s delay beats the 3 s apparent age
    assert f.current_age(initial, NOW + 3, NOW + 13) == 42
    assert f.age_header(41.9) == "41"


@pytest.mark.parametrize(
    ("cc", "age", "req", "fresh", "on_error"),
    [
        ("max-age=60", 10, {}, True, False),
        ("max-age=60", 70, {}, False, False),
        ("max-age=60", 10, {"Cache-Control": "no-cache"}, False, False),
        ("max-age=60", 10, {"Cache-Control": "max-age=5"}, False, False),
        ("max-age=60", 10, {"Cache-Control": "min-fresh=55"}, False, False),
        ("max-age=60", 70, {"Cache-Control": "max-stale=20"}, True, False),
        ("max-age=60, must-revalidate", 70, {"Cache-Control": "max-stale"}, False, False),
        ("no-cache, max-age=60", 10, {}, False, False),
        ("max-age=60, stale-if-error=100", 120, {}, False, True),
        ("max-age=60, stale-if-error=100", 200, {}, False, False),
        ("max-age=60", 10, {"Pragma": "no-cache"}, False, False),
    ],
)
def test_judge(cc: str, age: float, req: dict[str, str], fresh: bool, on_error: bool) -> None:
    verdict = f.judge(f.policy({"Cache-Control": cc}, NOW), age, req)
    assert (verdict.fresh, verdict.usable_on_error) == (fresh, on_error)


def test_merge_304_replaces_fields_but_keeps_length() -> None:
    stored = [("X-Rev", "a"), ("Content-Length", "10"), ("Cache-Control", "max-age=0")]
    merged = dict(
        f.merge_304(
            stored, [("X-Rev", "b"), ("Content-Length", "0"), ("Cache-Control", "max-age=9")]
        )
    )
    assert merged == {"X-Rev": "b", "Content-Length": "10", "Cache-Control": "max-age=9"}


def test_end_to_end_drops_hop_by_hop_and_connection_named() -> None:
    pairs = [("Connection", "x-trace"), ("X-Trace", "1"), ("Keep-Alive", "5"), ("X-Keep", "y")]
    assert f.end_to_end(pairs) == [("X-Keep", "y")]


@pytest.mark.parametrize(
    ("method", "status", "yes"),
    [
        ("POST", 200, True),
        ("DELETE", 204, True),
        ("PUT", 500, False),
        ("GET", 200, False),
    ],
)
def test_invalidates(method: str, status: int, yes: bool) -> None:
    assert f.invalidates(method, status) is yes


@given(st.text(max_size=200))
def test_cache_control_parser_never_raises(value: str) -> None:
    """Any header value parses to a dict (bad input is ignored, never a traceback)."""
    assert isinstance(f.parse_cache_control(value), dict)
    f.policy({"Cache-Control": value, "Expires": value, "Date": value}, NOW)
