"""plan_fill: manifests per appliance from popularity, catalog and the previous plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from origin.control.planning import moved, plan_fill
from tests.planning.helpers import appliance, title
from vcdn.hashing import rank
from vcdn.schemas import FillManifest, decode, encode

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
MB = 10**6


def catalog() -> list:
    titles = [title(f"t{i:02d}", minutes=10 + i % 7) for i in range(40)]
    titles.append(title("premiere", minutes=12, release_at="2027-01-15T20:00:00Z"))
    titles.append(title("later", minutes=12, release_at="2027-03-01T20:00:00Z"))
    return titles


def popularity() -> dict[str, dict[str, float]]:
    return {"s1": {f"t{i:02d}": 100.0 / (i + 1) for i in range(40)}}


def fleet(cap: int = 3000 * MB) -> list:
    return [appliance(f"a{i}", cap) for i in range(3)] + [
        appliance("sick", cap, state="stale"),
        appliance("b0", cap, site="s2"),
    ]


def test_manifests_are_valid_contracts_ordered_by_score_and_fit_capacity() -> None:
    plans = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    assert set(plans) == {"a0", "a1", "a2", "sick", "b0"}
    for m in plans.values():
        assert decode(FillManifest, encode(m)) == m
        scores = [t.score for t in m.titles]
        assert scores == sorted(scores, reverse=True)
        assert sum(t.bytes for t in m.titles) <= m.capacity_bytes


def test_a_title_is_on_its_top_ranked_healthy_appliance_and_peers_list_holders_first() -> None:
    plans = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    healthy = ["a0", "a1", "a2"]
    holders: dict[str, list[str]] = {}
    for a in healthy:
        for t in plans[a].titles:
            holders.setdefault(t.title, []).append(a)
    for t, hs in holders.items():
        ranked = rank(t, healthy)
        assert sorted(hs, key=ranked.index) == ranked[: len(hs)]
        for a in hs:
            entry = next(x for x in plans[a].titles if x.title == t)
            others = [f"http://{h}.test" for h in ranked[: len(hs)] if h != a]
            assert entry.peers[: len(others)] == others
            assert len(entry.peers) == 2  # every other healthy appliance of the site


def test_the_premiere_is_planned_before_it_opens_and_the_far_release_is_not() -> None:
    # Room for a dozen titles per site: the premiere is predicted as the 10th title.
    plans = plan_fill(popularity(), catalog(), fleet(6000 * MB), None, now=NOW)
    planned = {t.title for a in ("a0", "a1", "a2") for t in plans[a].titles}
    assert "premiere" in planned
    assert "later" not in planned


def test_a_running_live_event_is_in_no_fill_manifest() -> None:
    """Live titles are pulled through; the same title once ended (live=False) is planned."""
    from dataclasses import replace

    event = replace(title("t00"), live=True)
    others = [t for t in catalog() if t.title != "t00"]
    plans = plan_fill(popularity(), [*others, event], fleet(), None, now=NOW)
    assert all("t00" not in {t.title for t in m.titles} for m in plans.values())
    ended = plan_fill(popularity(), [*others, replace(event, live=False)], fleet(), None, now=NOW)
    assert any("t00" in {t.title for t in m.titles} for m in ended.values())


def test_an_unhealthy_appliance_keeps_its_previous_manifest() -> None:
    first = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    assert first["sick"].titles == []
    old = FillManifest("sick", NOW - 86400, 1, titles=first["a0"].titles)
    second = plan_fill(popularity(), catalog(), fleet(), {**first, "sick": old}, now=NOW)
    assert second["sick"] is old


def test_another_site_without_history_gets_the_global_favourites() -> None:
    plans = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    assert plans["b0"].titles[0].title == "premiere" or plans["b0"].titles[0].title == "t00"
    assert {t.title for t in plans["b0"].titles} >= {"t00", "t01"}


def test_replanning_the_same_night_moves_zero_bytes() -> None:
    first = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    second = plan_fill(popularity(), catalog(), fleet(), first, now=NOW)
    assert moved(first, second, catalog()) == 0
    assert moved(None, first, catalog()) > 0


def test_smoothing_blends_yesterdays_prediction_by_elapsed_time() -> None:
    from origin.control.planning.plan import smooth
    from vcdn.schemas import FillTitle

    before = [FillManifest("a0", NOW - 86400, 1, titles=[FillTitle("held", 100.0, 1, [])])]
    today = {"held": 20.0, "new": 50.0}
    day = smooth(today, before, NOW, memory=86400)
    assert day["held"] == 60.0  # one half-life: halfway
    assert day["new"] == 50.0  # no memory of a title the last plan did not place
    at_once = smooth(today, [FillManifest("a0", NOW, 1, before[0].titles)], NOW, 86400)
    assert at_once["held"] == 100.0  # a rerun at once changes nothing
    assert smooth(today, before, NOW, memory=0) == today
    assert "gone" not in smooth({}, [FillManifest("a0", NOW, 1, [FillTitle("gone", 5, 1, [])])],
                                NOW, 86400)


@st.composite
def fleets(draw: st.DrawFn) -> list:
    n = draw(st.integers(1, 6))
    return [
        appliance(
            f"a{i}", draw(st.integers(0, 4000 * MB)), site=draw(st.sampled_from(["s1", "s2"])),
            state=draw(st.sampled_from(["healthy", "healthy", "stale", "draining", "down"])),
        )
        for i in range(n)
    ]


@settings(max_examples=60, deadline=None)
@given(fleet=fleets(), counts=st.dictionaries(
    st.sampled_from([f"t{i:02d}" for i in range(40)]), st.floats(0.0, 500.0), max_size=40))
def test_plan_fill_invariants_for_any_fleet(fleet: list, counts: dict[str, float]) -> None:
    """Every appliance gets a manifest; healthy ones fit their budget; each title sits on a
    prefix of its rendezvous ranking among its site's healthy appliances."""
    plans = plan_fill({"s1": counts}, catalog(), fleet, None, now=NOW)
    assert set(plans) == {a.id for a in fleet}
    holders: dict[tuple[str, str], list[str]] = {}
    for a in fleet:
        m = plans[a.id]
        if a.state != "healthy":
            assert m.titles == []
            continue
        assert sum(t.bytes for t in m.titles) <= a.capacity_bytes * 0.8
        for t in m.titles:
            holders.setdefault((a.site, t.title), []).append(a.id)
    for (site, name), hs in holders.items():
        healthy = [a.id for a in fleet if a.site == site and a.state == "healthy"]
        ranked = rank(name, healthy)
        assert sorted(hs, key=ranked.index) == ranked[: len(hs)]


def test_manifest_for_plans_one_site_and_remembers_what_it_gave() -> None:
    from origin.control.planning.plan import manifest_for

    memory: dict[str, FillManifest] = {}
    got = manifest_for("a0", popularity(), catalog(), fleet(), memory, now=NOW)
    assert memory == {"a0": got}
    whole = plan_fill(popularity(), catalog(), [a for a in fleet() if a.site == "s1"], None,
                      now=NOW)
    assert got == whole["a0"]
    again = manifest_for("a0", popularity(), catalog(), fleet(), memory, now=NOW + 60)
    assert [t.title for t in again.titles] == [t.title for t in got.titles]


@pytest.mark.parametrize(("state", "planned"), [("down", True), ("stale", True),
                                                ("draining", False)])
def test_an_appliance_asking_before_its_first_heartbeat_still_gets_a_plan(
    state: str, planned: bool
) -> None:
    from origin.control.planning.plan import manifest_for

    fleet_ = [appliance("a0", 3000 * MB, state=state), appliance("a1", 3000 * MB)]
    got = manifest_for("a0", popularity(), catalog(), fleet_, {}, now=NOW)
    assert bool(got.titles) is planned


def test_peers_are_the_rest_of_the_healthy_site_in_the_titles_ranking() -> None:
    """The whole list, not only its holders' prefix: every other healthy appliance of the
    site, in the order `rank` gives that set (steering's order)."""
    cap = 3000 * MB
    site = [appliance(f"a{i}", cap) for i in range(6)] + [
        appliance("sick", cap, state="stale"),
        appliance("leaving", cap, state="draining"),
        appliance("b0", cap, site="s2"),
    ]
    plans = plan_fill(popularity(), catalog(), site, None, now=NOW)
    healthy = [f"a{i}" for i in range(6)]
    checked = 0
    for a in healthy:
        others = [h for h in healthy if h != a]
        for t in plans[a].titles:
            assert t.peers == [f"http://{h}.test" for h in rank(t.title, others)], (a, t.title)
            checked += 1
    assert checked >= 10


def test_a_stored_manifest_reads_back_equal_to_the_strict_decoding() -> None:
    """Planning reads every stored manifest back without the strict decoder: it must
    rebuild the very manifest written, as the strict decoder would."""
    import json

    from origin.control.planning.shared import manifest_from_trusted, manifest_json

    plans = plan_fill(popularity(), catalog(), fleet(), None, now=NOW)
    for m in plans.values():
        text = manifest_json(m)
        assert json.loads(text) == encode(m)
        assert manifest_from_trusted(text) == m == decode(FillManifest, json.loads(text))
