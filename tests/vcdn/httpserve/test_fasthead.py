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


LINES = [b"GET /s/k1.1.a/t/a.m4s HTTP/1.1", b"HEAD /a HTTP/1.1", b"GET /a\x01 HTTP/1.1",
         b"GET /a HTTP/1.0", b"GET /a\n HTTP/1.1", b"PUT /a HTTP/1.1", b"GET  /a HTTP/1.1",
         b"GET /a HTTP/1.1\r", b"GET /\xff HTTP/1.1", b"GET /b HTTP/1.1 "]
FIELDS = [b"Host: e\r\nUser-Agent: p", b"Host: e\r\nConnection: close", b"User-Agent: p",
          b"Host: e\r\nHost: f", b"Host: e\r\nX: a\rb", b"Host: e\r\n", b"", b"Host: e\nX: y",
          b"Host: e\r\nConnection: upgrade", b"Host: e\r\nContent-Length: 1"]


@given(st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(FIELDS)), max_size=12))
def test_fields_seen_before_change_nothing(heads: list[tuple[bytes, bytes]]) -> None:
    """The field lines are remembered apart from the request line (every URL with a new
    token is a new head): whatever came before, a head parses as it does the first time,
    a refused request line with accepted fields and accepted ones with refused fields."""
    from vcdn.httpserve import fasthead

    for line, fields in heads:
        data = line + b"\r\n" + fields
        got = parse_head(data, 16384)
        fasthead._HEADS.clear()
        fasthead._FIELDS.clear()
        assert got == parse_head(data, 16384)


def test_one_player_many_urls_share_their_fields() -> None:
    first = parse_head(b"GET /s/k1.1.a/t/a.m4s HTTP/1.1\r\nHost: e\r\nX-Seen: once", 16384)
    second = parse_head(b"GET /s/k1.2.b/t/b.m4s HTTP/1.1\r\nHost: e\r\nX-Seen: once", 16384)
    assert first is not None and second is not None
    assert (first.target, second.target) == ("/s/k1.1.a/t/a.m4s", "/s/k1.2.b/t/b.m4s")
    assert second.headers is first.headers == {"Host": "e", "X-Seen": "once"}
    assert parse_head(b"GET /a\x01 HTTP/1.1\r\nHost: e\r\nX-Seen: once", 16384) is None
