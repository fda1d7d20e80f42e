"""Popularity prediction: decayed counts and the release boost."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from origin.control.planning.predict import (
    DAY,
    HOUR,
    DecayedCounts,
    ReleaseBoost,
    decay,
    parse_release,
    predict,
    predict_site,
)
from tests.planning.helpers import title
from vcdn.errors import ClientError

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_a_score_halves_every_half_life() -> None:
    counts = DecayedCounts(half_life=DAY)
    counts.add("s1", "a", 100, T0)
    assert counts.table(T0 + DAY)["s1"]["a"] == pytest.approx(50.0)
    assert counts.table(T0 + 2 * DAY)["s1"]["a"] == pytest.approx(25.0)


def test_adding_decays_the_old_score_first() -> None:
    counts = DecayedCounts(half_life=DAY)
    counts.add("s1", "a", 100, T0)
    counts.add("s1", "a", 10, T0 + DAY)
    assert counts.table(T0 + DAY)["s1"]["a"] == pytest.approx(60.0)


def test_a_clock_stepping_back_never_grows_a_score() -> None:
    assert decay(10.0, T0, T0 - HOUR, DAY) == 10.0


@given(
    score=st.floats(0, 1e9), dt=st.floats(0, 1e7), half_life=st.floats(1, 1e7),
)
def test_decay_never_grows_and_matches_the_half_life_formula(
    score: float, dt: float, half_life: float
) -> None:
    value = decay(score, 0.0, dt, half_life)
    assert 0.0 <= value <= score
    assert value == pytest.approx(score * 2 ** (-dt / half_life), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("half_life", [0.0, -1.0])
def test_a_non_positive_half_life_is_refused(half_life: float) -> None:
    with pytest.raises(ValueError, match="half_life"):
        DecayedCounts(half_life)


OWN = {f"t{i}": float(100 - i) for i in range(20)}  # t0 most popular, t9 scores 91


@pytest.mark.parametrize(
    ("hours_to_premiere", "expected"),
    [
        (48.0, None),  # announced, beyond the lead: not predicted yet
        (30.0, 91.0),  # inside the 36 h lead: as popular as the 10th title
        (1.0, 91.0),
        (0.0, 91.0),  # premiere: full boost
        (-48.0, 91.0 / 2),  # two days later: one fade half-life
    ],
)
def test_a_premiere_is_boosted_from_the_lead_time_and_fades_after(
    hours_to_premiere: float, expected: float | None
) -> None:
    now = T0
    releases = {"new": now + hours_to_premiere * HOUR}
    got = predict_site(OWN, {}, releases, now, boost=ReleaseBoost(lead=36 * HOUR, rank=10))
    if expected is None:
        assert "new" not in got
    else:
        assert got["new"] == pytest.approx(expected)


def test_observed_demand_wins_over_a_smaller_boost() -> None:
    now = T0
    own = {**OWN, "new": 500.0}
    got = predict_site(own, {}, {"new": now - 3 * HOUR}, now)
    assert got["new"] == 500.0


def test_a_site_without_history_still_gets_premieres_and_global_hits() -> None:
    catalog = [title("a"), title("b", release_at="2027-01-15T20:00:00Z")]
    got = predict({"s1": {"a": 100.0}}, catalog, ["s1", "s2"], T0)
    assert got["s2"]["a"] == pytest.approx(10.0)  # 10% of the global score
    assert got["s2"]["b"] > 0.0
    assert got["s1"]["a"] == pytest.approx(110.0)


def test_release_at_forms() -> None:
    assert parse_release("2027-01-15T08:00:00Z") == T0
    assert parse_release("2027-01-15T09:00:00+01:00") == T0
    assert parse_release("2027-01-15T08:00:00") == T0  # no offset: UTC
    assert parse_release(None) is None


def test_a_malformed_release_at_is_a_client_error_naming_the_title() -> None:
    with pytest.raises(ClientError, match=r"'x'.*ISO 8601"):
        parse_release("next friday", "x")


def test_a_malformed_release_at_does_not_stop_the_prediction() -> None:
    got = predict({"s1": {"a": 1.0}}, [title("a", release_at="soon")], ["s1"], T0)
    assert got["s1"] == {"a": pytest.approx(1.1)}


def test_boost_reference_on_a_site_with_fewer_titles_than_the_rank() -> None:
    got = predict_site({"a": 4.0, "b": 2.0}, {}, {"new": T0}, T0, boost=ReleaseBoost(rank=10))
    assert math.isclose(got["new"], 2.0)


def test_a_store_may_pass_its_own_global_totals() -> None:
    got = predict({"s1": {"a": 10.0}}, [title("a"), title("b")], ["s1"], T0,
                  global_table={"a": 10.0, "b": 1000.0})
    assert got["s1"]["b"] == pytest.approx(100.0)  # 10% of the other sites' total
    assert got["s1"]["a"] == pytest.approx(11.0)
