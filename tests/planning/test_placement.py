"""Placement: copies, rendezvous positions, capacity, and stability across nights."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from origin.control.planning.placement import (
    Box,
    PlacementRules,
    bytes_moved,
    place_site,
    spread_for,
)
from vcdn.hashing import rank

GB = 10**9


def site(n: int, capacity: int = 10 * GB) -> list[Box]:
    return [Box(f"a{i}", capacity) for i in range(n)]


demands = st.dictionaries(
    st.from_regex(r"t[0-9]{1,3}", fullmatch=True), st.floats(0.01, 1000), min_size=1, max_size=60
)
size_of = st.integers(1, 3 * GB)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, float], dict[str, int], list[Box]]:
    demand = draw(demands)
    sizes = {t: draw(size_of) for t in demand}
    boxes = [Box(f"a{i}", draw(st.integers(0, 20 * GB))) for i in range(draw(st.integers(1, 5)))]
    return demand, sizes, boxes


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_placement_properties(case: tuple[dict[str, float], dict[str, int], list[Box]]) -> None:
    """Every filled title has a copy on its top-ranked appliance and its copies are a
    prefix of the rendezvous ranking; no appliance gets more than its budget."""
    demand, sizes, boxes = case
    rules = PlacementRules()
    plan = place_site(demand, sizes, boxes, rules=rules)
    ids = [b.id for b in boxes]
    for t, holders in plan.holders.items():
        assert len(holders) >= 1
        assert holders == rank(t, ids)[: len(holders)]
        assert len(holders) <= len(rules.spread)
    for b in boxes:
        used = sum(sizes[t] for t in plan.held[b.id])
        assert used == plan.used[b.id]
        assert used <= b.capacity * (1 - rules.headroom)


@settings(max_examples=100, deadline=None)
@given(scenario())
def test_a_rerun_with_the_same_inputs_moves_nothing(
    case: tuple[dict[str, float], dict[str, int], list[Box]],
) -> None:
    demand, sizes, boxes = case
    first = place_site(demand, sizes, boxes)
    second = place_site(demand, sizes, boxes, previous=first.held)
    assert bytes_moved(first.held, second.held, sizes) == 0
    assert second.held == first.held


def test_small_popularity_changes_move_few_bytes() -> None:
    """±5% noise on every title's demand moves under 5% of the planned bytes."""
    import random

    rng = random.Random(7)
    demand = {f"t{i}": 1000.0 / (i + 1) ** 0.8 for i in range(2000)}
    sizes = {t: rng.randint(1, 8) * GB for t in demand}
    boxes = site(4, capacity=800 * GB)
    first = place_site(demand, sizes, boxes)
    noisy = {t: v * rng.uniform(0.95, 1.05) for t, v in demand.items()}
    second = place_site(noisy, sizes, boxes, previous=first.held)
    planned = sum(first.used.values())
    assert bytes_moved(first.held, second.held, sizes) < 0.05 * planned
    # Without stickiness the same noise moves more: the hysteresis is what keeps plans still.
    loose = place_site(noisy, sizes, boxes, previous=first.held,
                       rules=PlacementRules(stickiness=0.0))
    assert bytes_moved(first.held, loose.held, sizes) > bytes_moved(first.held, second.held, sizes)


def test_the_most_popular_titles_get_a_second_copy_on_their_second_ranked_appliance() -> None:
    demand = {f"t{i}": 1000.0 / (i + 1) for i in range(200)}
    sizes = dict.fromkeys(demand, GB)
    boxes = site(4, capacity=40 * GB)
    plan = place_site(demand, sizes, boxes)
    assert len(plan.holders["t0"]) == 2
    assert plan.holders["t0"] == rank("t0", [b.id for b in boxes])[:2]
    assert all(len(plan.holders[t]) == 1 for t in plan.holders if int(t[1:]) > 150)


def test_headroom_is_left_free_and_titles_too_big_are_left_out() -> None:
    boxes = [Box("a0", 10 * GB)]
    plan = place_site({"big": 9.0, "small": 1.0}, {"big": 9 * GB, "small": GB}, boxes,
                      rules=PlacementRules(headroom=0.2))
    assert plan.held == {"a0": ["small"]}


def test_no_healthy_appliance_places_nothing() -> None:
    assert place_site({"a": 1.0}, {"a": 1}, []).holders == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"headroom": 1.0}, "headroom"),
        ({"headroom": -0.1}, "headroom"),
        ({"stickiness": -1.0}, "stickiness"),
        ({"spread": ()}, "spread"),
        ({"spread": (0.2, 0.8)}, "grow"),
    ],
)
def test_bad_rules_are_refused_with_a_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlacementRules(**kwargs)


def test_bytes_moved_counts_only_what_an_appliance_did_not_hold() -> None:
    sizes = {"a": 5, "b": 7, "c": 11}
    assert bytes_moved({"x": {"a", "b"}}, {"x": ["b", "c"], "y": ["a"]}, sizes) == 11 + 5


@pytest.mark.parametrize(
    ("dispersion", "spill", "expected"),
    [
        (1, 0.2, (0.8, 0.2)),  # steering's default: everyone to rank 1, spill when loaded
        (2, 0.2, (0.4, 0.4, 0.2)),
        (1, 0.0, (1.0,)),
        (8, 0.2, (0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)),
    ],
)
def test_spread_follows_steering_dispersion(
    dispersion: int, spill: float, expected: tuple[float, ...]
) -> None:
    got = spread_for(dispersion, spill)
    assert got == pytest.approx(expected)
    PlacementRules(spread=got)  # always a valid (non-increasing) spread


@pytest.mark.parametrize(("dispersion", "spill"), [(0, 0.2), (1, 1.0), (1, -0.1)])
def test_spread_for_refuses_nonsense(dispersion: int, spill: float) -> None:
    with pytest.raises(ValueError, match="dispersion"):
        spread_for(dispersion, spill)
