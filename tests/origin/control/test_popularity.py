"""Popularity scores, pure: exponential decay and per-site tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from origin.control.popularity import Score, add, by_site, current, decay, global_scores

times = st.floats(min_value=0, max_value=1e9, allow_nan=False)
scores = st.floats(min_value=0, max_value=1e12, allow_nan=False)
half_lives = st.floats(min_value=1, max_value=1e7, allow_nan=False)


@pytest.mark.parametrize(
    ("elapsed", "expected"), [(0, 8.0), (10, 4.0), (20, 2.0), (30, 1.0), (5, 8 / 2**0.5)]
)
def test_a_score_halves_every_half_life(elapsed: float, expected: float) -> None:
    assert decay(8.0, 100.0, 100.0 + elapsed, 10.0) == pytest.approx(expected)


def test_a_clock_that_steps_back_never_grows_a_score() -> None:
    assert decay(8.0, 100.0, 50.0, 10.0) == 8.0


def test_a_non_positive_half_life_is_refused() -> None:
    with pytest.raises(ValueError, match="half_life"):
        decay(1.0, 0.0, 1.0, 0.0)


def test_new_requests_add_to_the_decayed_score() -> None:
    assert add(None, 3, 50.0, 10.0) == 3.0
    assert add(Score("t", "s", 8.0, 0.0), 3, 10.0, 10.0) == pytest.approx(7.0)


@given(scores, times, times, times, half_lives)
def test_decaying_in_two_steps_equals_one_step(
    s: float, t0: float, d1: float, d2: float, h: float
) -> None:
    t1, t2 = t0 + d1, t0 + d1 + d2
    assert decay(decay(s, t0, t1, h), t1, t2, h) == pytest.approx(
        decay(s, t0, t2, h), rel=1e-9, abs=1e-300
    )


@given(scores, times, times, half_lives)
def test_decay_never_increases_and_never_goes_negative(
    s: float, t0: float, d: float, h: float
) -> None:
    assert 0.0 <= decay(s, t0, t0 + d, h) <= s


def test_current_sorts_highest_first_and_tables_group_by_site() -> None:
    rows = [Score("a", "s1", 1.0, 0.0), Score("b", "s1", 5.0, 0.0), Score("a", "s2", 2.0, 10.0)]
    now = current(rows, 10.0, 10.0)
    assert [(s.title, s.site) for s in now] == [("b", "s1"), ("a", "s2"), ("a", "s1")]
    assert now[0].score == pytest.approx(2.5) and now[0].updated_at == 10.0
    table = by_site(now)
    assert table == {"s1": {"a": pytest.approx(0.5), "b": pytest.approx(2.5)}, "s2": {"a": 2.0}}
    assert global_scores(table) == {"a": pytest.approx(2.5), "b": pytest.approx(2.5)}
