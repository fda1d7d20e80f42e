"""The hit protocol's narrow request-head parser (pure): None for anything not plain."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.httpserve.fasthead import parse_head


@pytest.mark.parametrize(
    "head",
    [
        b"GET /a HTTP/1.0\r\nHost: x",
        b"POST /a HTTP/1.1\r\nHost: x",
        b"GET /a HTTP/1.1",
        b"GET  /a HTTP/1.1\r\nHost: x",
        b"GET http://x/a HTTP/1.1\r\nHost: x",
        b"GET /a HTTP/1.1\r\nHost: x\r\n folded",
        b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5",
        b"GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=2-3",
        b"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: y",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x01b",
        b"GET /\xff HTTP/1.1\r\nHost: x",
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade",
        # A bare LF or CR (not in a CRLF): in the target, a field name, a value.
        b"GET /a\n HTTP/1.1\r\nHost: x",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX\n: y",
        b"GET /a HTTP/1.1\r\nHost: x\ry",
        b"GET /a HTTP/1.1\r\nHost: x\r",
    ],
)
def test_head_parser_refuses_what_is_not_plain(head: bytes) -> None:
    assert parse_head(head, 16384) is None


def test_head_parser_reads_a_player_request() -> None:
    head = parse_head(
        b"GET /s/t/x/a.m4s HTTP/1.1\r\nHost: e\r\nrange: bytes=0-9\r\n"
        b'if-none-match: "a"\r\nConnection: close',
        16384,
    )
    assert head is not None and not head.keep_alive
    assert head.headers == {
        "Host": "e",
        "Range": "bytes=0-9",
        "If-None-Match": '"a"',
        "Connection": "close",
    }


@given(st.binary(max_size=300))
def test_head_parser_never_raises(data: bytes) -> None:
    """Arbitrary bytes give a Head or None, never an exception."""
    parse_head(data, 16384)


def test_a_head_seen_before_gives_the_same_answer_and_limits_still_hold() -> None:
    data = b"GET /p.m3u8 HTTP/1.1\r\nHost: e\r\nUser-Agent: player"
    first = parse_head(data, 16384)
    assert first is not None and parse_head(data, 16384) == first
    assert parse_head(data, len(data) - 1) is None
