"""The one retry schedule (vcdn.backoff), pure."""

from __future__ import annotations

import random

import pytest

from vcdn.backoff import Backoff, delay, step


def test_backoff_grows_is_jittered_and_capped() -> None:
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(12)]
    assert delays[0] <= 0.5 and delays[3] > delays[0]
    assert all(d <= 8.0 for d in delays) and all(d >= 0.25 for d in delays)
    assert len({round(d, 6) for d in delays[6:]}) > 1, "capped delays are still jittered"
    b.reset()
    assert b.next_delay() <= 0.5


def test_backoff_survives_a_very_long_outage() -> None:
    b = Backoff(base=0.5, cap=30.0, attempt=5000)
    assert 15.0 <= b.next_delay() <= 30.0


def test_unjittered_steps_double_from_base_up_to_the_cap() -> None:
    assert [step(0.5, 30.0, k) for k in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert delay(0.5, 30.0, 3, "none") == 4


@pytest.mark.parametrize(("jitter", "low"), [("equal", 0.5), ("full", 0.0)])
def test_jitter_draws_within_its_share_of_the_step(jitter, low) -> None:
    rng = random.Random(7)
    draws = [delay(1.0, 8.0, 2, jitter, rng) for _ in range(200)]
    assert all(low * 4 <= d <= 4 for d in draws)
    assert min(draws) < (low * 4 + 4) / 2 < max(draws)
