"""Fill window and pacing primitives, in virtual time."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.pacing import TokenBucket
from appliance.schedule import FillWindow
from vcdn.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "when", "open_"),
    [
        ("02:00-14:00", "01:59", False),
        ("02:00-14:00", "02:00", True),
        ("02:00-14:00", "13:59", True),
        ("02:00-14:00", "14:00", False),
        ("22:00-06:00", "23:30", True),  # wraps midnight
        ("22:00-06:00", "05:59", True),
        ("22:00-06:00", "06:00", False),
        ("22:00-06:00", "12:00", False),
        ("always", "12:34", True),
        ("00:00-00:00", "03:00", True),
        ("00:00-24:00", "23:59", True),
    ],
)
def test_window_is_open_at_local_times(text: str, when: str, open_: bool) -> None:
    h, m = map(int, when.split(":"))
    assert FillWindow.parse(text).is_open(datetime(2026, 1, 1, h, m)) is open_


@pytest.mark.parametrize("bad", ["", "2-14", "02:00", "25:00-01:00", "01:60-02:00", "24:30-01:00",
                                 "ab:cd-ef:gh", "02:00-14:00-16:00"])
def test_malformed_window_is_a_config_error_quoting_the_value(bad: str) -> None:
    with pytest.raises(ConfigError, match="Fill window"):
        FillWindow.parse(bad)


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 23), st.integers(0, 59))
def test_seconds_until_open_lands_inside_the_window(
    h1: int, m1: int, h2: int, m2: int, h: int, m: int
) -> None:
    window = FillWindow.parse(f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}")
    now = datetime(2026, 3, 1, h, m, 30)
    wait = window.seconds_until_open(now)
    assert (wait == 0) == window.is_open(now)
    assert 0 <= wait <= 24 * 3600
    if wait:
        assert window.is_open(now + timedelta(seconds=wait))
    assert str(FillWindow.parse(str(window))) == str(window)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("chunk", [1000, 64 * 1024, 1_000_000])
async def test_token_bucket_holds_the_long_run_rate(chunk: int) -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=100_000, burst=100_000, clock=t.clock, sleep=t.sleep)
    total = 0
    while total < 2_000_000:
        await bucket.take(chunk)
        total += chunk
    # The first burst is free; after that 100 kB/s, give or take one chunk.
    expected = (total - 100_000) / 100_000
    assert expected - chunk / 100_000 - 0.01 <= t.now <= expected + chunk / 100_000 + 0.01


async def test_unlimited_bucket_never_sleeps() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=0, clock=t.clock, sleep=t.sleep)
    for _ in range(100):
        await bucket.take(10**9)
    assert t.now == 0
