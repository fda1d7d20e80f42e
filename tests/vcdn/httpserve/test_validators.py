"""Entity-tag lists and HTTP dates (RFC 9110 §8.8, §5.6.7)."""

from __future__ import annotations

import os

import pytest

from vcdn.httpserve.validators import (
    STAR,
    ETag,
    format_http_date,
    parse_etag,
    parse_etag_list,
    parse_http_date,
    sha256_etag,
    stat_etag,
    strong_match,
    weak_match,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"abc"', (ETag("abc"),)),
        ('W/"abc"', (ETag("abc", weak=True),)),
        ('"a", W/"b" ,"c"', (ETag("a"), ETag("b", True), ETag("c"))),
        ('"a,b"', (ETag("a,b"),)),  # commas inside a quoted tag are part of it
        ('""', (ETag(""),)),
        ("*", STAR),
        (" * ", STAR),
        ("abc", (ETag("abc"),)),  # unquoted: taken as a strong opaque tag
        ('"unterminated', None),
        ("", None),
    ],
)
def test_etag_lists_parse(header: str, expected: object) -> None:
    assert parse_etag_list(header) == expected


def test_single_etag_rejects_lists() -> None:
    """If-Range carries one validator; a list is not one."""
    assert parse_etag('"a"') == ETag("a")
    assert parse_etag('"a", "b"') is None
    assert parse_etag("*") is None


def test_strong_and_weak_comparison() -> None:
    """RFC 9110 §8.8.3.2 table."""
    w1, w2, s1 = ETag("1", True), ETag("2", True), ETag("1")
    assert not strong_match(w1, w1) and weak_match(w1, w1)
    assert not strong_match(w1, w2) and not weak_match(w1, w2)
    assert not strong_match(w1, s1) and weak_match(w1, s1)
    assert strong_match(s1, s1) and weak_match(s1, s1)


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_all_three_http_date_forms_parse(text: str) -> None:
    """RFC 9110 §5.6.7: recipients accept IMF-fixdate, rfc850 and asctime."""
    assert parse_http_date(text) == 784111777


@pytest.mark.parametrize("text", ["", "yesterday", "Sun, 06 Nov 1994 08:49:37", "1994-11-06"])
def test_invalid_dates_are_none(text: str) -> None:
    assert parse_http_date(text) is None


def test_format_round_trips() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(format_http_date(1_700_000_000.7)) == 1_700_000_000


def test_etag_forms(tmp_path) -> None:
    """sha256 tags are quoted hex; stat tags change when the file is rewritten."""
    assert sha256_etag("AB" * 32) == '"' + "ab" * 32 + '"'
    f = tmp_path / "x"
    f.write_bytes(b"one")
    first = stat_etag(os.stat(f))
    g = tmp_path / "y"
    g.write_bytes(b"two!")
    os.replace(g, f)
    assert stat_etag(os.stat(f)) != first
    assert parse_etag(first) is not None and not parse_etag(first).weak
