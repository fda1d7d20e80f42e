"""The per-answer head tail (`vcdn.httpserve.wire.head_tail`): kept for a second, exact;
and a relayed answer's head (`relay_head`), laid out as a hit's."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from vcdn.httpserve.wire import head_tail, relay_head


def test_tails_follow_the_second_the_age_and_keep_alive() -> None:
    t = 1_700_000_000.25
    date = formatdate(1_700_000_000, usegmt=True)
    assert head_tail(t) == f"Date: {date}\r\n\r\n".encode()
    assert head_tail(t, age=5.9) == f"Age: 5\r\nDate: {date}\r\n\r\n".encode()
    assert head_tail(t, age=-2.0, keep_alive=False) == (
        f"Age: 0\r\nDate: {date}\r\nConnection: close\r\n\r\n".encode())
    later = formatdate(1_700_000_001, usegmt=True)
    assert head_tail(t + 1, age=5.9) == f"Age: 5\r\nDate: {later}\r\n\r\n".encode()
    assert head_tail(t, age=5.9) == f"Age: 5\r\nDate: {date}\r\n\r\n".encode()


def test_relayed_fields_take_the_places_a_hit_gives_them() -> None:
    t = 1_700_000_000.0
    date = formatdate(1_700_000_000, usegmt=True)
    head = relay_head(503, [
        ("Cache-Control", "no-store"), ("X-A", "1"), ("Content-Length", "3"),
        ("Set-Cookie", "a=1"), ("Via", "1.1 up, 1.1 vcdn-edge"), ("ETag", '"e"'),
        ("Set-Cookie", "b=2"), ("Access-Control-Allow-Origin", "*"), ("Age", "4"),
        ("Content-Type", "text/plain"), ("Cache-Status", "vcdn-edge; fwd=uri-miss"),
    ], t, keep_alive=False)
    assert head.decode().split("\r\n") == [
        "HTTP/1.1 503 Service Unavailable", 'ETag: "e"', "Content-Type: text/plain",
        "Content-Length: 3", "Access-Control-Allow-Origin: *", "Server: vcdn", "X-A: 1",
        "Set-Cookie: a=1", "Set-Cookie: b=2", "Via: 1.1 up, 1.1 vcdn-edge",
        "Cache-Status: vcdn-edge; fwd=uri-miss", "Cache-Control: no-store", "Age: 4",
        f"Date: {date}", "Connection: close", "", "",
    ]
    assert relay_head(599, [], t).startswith(b"HTTP/1.1 599 Unknown\r\nServer: vcdn\r\n")


@pytest.mark.parametrize("pair", [("X-A", "1\r\nX-B: 2"), ("X-A\nX-B", "1")])
def test_a_line_break_is_never_relayed(pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        relay_head(200, [pair], 0.0)
