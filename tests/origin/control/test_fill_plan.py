"""Fill planning v1, pure: demand per byte into capacity, most popular first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from origin.control.fill_plan import GLOBAL_WEIGHT, HEADROOM, plan, plan_one
from vcdn.hashing import rank
from vcdn.schemas import ApplianceView, FileEntry, TitleManifest


def title(name: str, size: int) -> TitleManifest:
    return TitleManifest(
        title=name,
        duration=10.0,
        segment_seconds=4.0,
        format="fmp4",
        single_file=False,
        renditions=[],
        files=[FileEntry(f"{name}.m4s", size, "0" * 64)],
    )


def appliance(
    id_: str, site: str = "s1", capacity: int = 1000, state: str = "healthy"
) -> ApplianceView:
    return ApplianceView(
        id=id_,
        site=site,
        public_url=f"http://{id_}:80",
        capacity_bytes=capacity,
        asn=0,
        lat=0.0,
        lon=0.0,
        prefixes=[],
        state=state,  # type: ignore[arg-type]
    )


def test_titles_are_chosen_by_demand_per_byte_and_listed_by_demand() -> None:
    catalog = [title("big", 800), title("small1", 300), title("small2", 300), title("none", 10)]
    # big: 10 per 800 bytes; smalls: 6 and 5 per 300 bytes: two smalls beat one big.
    pop = {"s1": {"big": 10.0, "small1": 6.0, "small2": 5.0}}
    a = appliance("a1", capacity=1000)  # 900 usable after headroom
    fill = plan_one(a, pop, catalog, [a], now=5.0)
    assert [t.title for t in fill.titles] == ["small1", "small2"]
    assert sum(t.bytes for t in fill.titles) <= 1000 * (1 - HEADROOM)
    assert fill.generated_at == 5.0 and fill.capacity_bytes == 1000


def test_a_site_without_history_borrows_global_demand() -> None:
    catalog = [title("x", 10), title("y", 10)]
    pop = {"other": {"x": 10.0}, "s1": {"y": 0.5}}
    fill = plan_one(appliance("a1"), pop, catalog, [], now=0.0)
    assert [(t.title, t.score) for t in fill.titles] == [
        ("x", 10.0 * GLOBAL_WEIGHT),
        ("y", 0.5 + 0.5 * GLOBAL_WEIGHT),
    ]


def test_peers_are_healthy_appliances_of_the_same_site_in_rendezvous_order() -> None:
    me = appliance("a1")
    fleet = [
        me,
        appliance("a2"),
        appliance("a3"),
        appliance("a4", state="stale"),
        appliance("a5", state="draining"),
        appliance("b1", site="s2"),
    ]
    fill = plan_one(me, {"s1": {"t": 1.0}}, [title("t", 1)], fleet, now=0.0)
    [t] = fill.titles
    assert t.peers == [f"http://{p}:80" for p in rank("t", ["a2", "a3"])]


def test_plan_covers_every_appliance() -> None:
    fleet = [appliance("a1"), appliance("b1", site="s2")]
    out = plan({"s1": {"t": 1.0}}, [title("t", 1)], fleet, now=0.0)
    assert set(out) == {"a1", "b1"}
    assert out["b1"].titles[0].score == GLOBAL_WEIGHT


@given(
    st.lists(st.tuples(st.integers(0, 2000), st.floats(0, 100, allow_nan=False)), max_size=30),
    st.integers(0, 5000),
)
def test_a_plan_never_exceeds_capacity_and_is_sorted_by_demand(
    items: list[tuple[int, float]], capacity: int
) -> None:
    catalog = [title(f"t{i}", size) for i, (size, _) in enumerate(items)]
    pop = {"s1": {f"t{i}": score for i, (_, score) in enumerate(items)}}
    fill = plan_one(appliance("a1", capacity=capacity), pop, catalog, [], now=0.0)
    assert sum(t.bytes for t in fill.titles) <= capacity * (1 - HEADROOM)
    got = [t.score for t in fill.titles]
    assert got == sorted(got, reverse=True)
    assert all(t.score > 0 for t in fill.titles)
