"""The per-answer head tail (`vcdn.httpserve.wire.head_tail`): kept for a second, exact."""

from __future__ import annotations

from email.utils import formatdate

from vcdn.httpserve.wire import head_tail


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
