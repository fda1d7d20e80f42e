"""The cache simulator on a tiny catalog: its report's invariants hold and it is
deterministic. (The full run is `python -m bench.cachesim`, not part of the suite.)"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.cachesim.__main__ import main as cachesim_main
from bench.cachesim.replay import Result, next_requests, replay
from bench.cachesim.trace import DAY, TraceConfig, make_trace

ONLINE = ("lru", "lfu", "s3fifo")
TINY = TraceConfig(seed=3, titles=400, days=2, sessions_per_day=600, releases_per_day=3)


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    trace = make_trace(TINY)
    oracle = next_requests(trace)
    return {p: replay(trace, p, 0.10, oracle=oracle)
            for p in (*ONLINE, "ours", "ours-oracle", "belady")}


def test_ratios_are_ratios_and_the_site_serves_at_least_its_hits(
    results: dict[str, Result],
) -> None:
    for r in results.values():
        assert r.requested > 0
        assert 0.0 <= r.hit_ratio <= r.from_site <= 1.0
        assert 0.0 <= r.premiere_hit_ratio <= 1.0
        assert 0 < r.premiere_requested < r.requested
        assert r.origin >= r.requested - r.hit - r.peer  # miss fills (+ nightly fills)


def test_belady_is_at_least_every_online_policy(results: dict[str, Result]) -> None:
    for p in ONLINE:
        assert results["belady"].hit_ratio >= results[p].hit_ratio, p


def test_ours_serves_premieres_from_cache_better_than_on_demand_policies(
    results: dict[str, Result],
) -> None:
    """The release boost fills a title before its premiere, so its first day hits."""
    for p in ONLINE:
        assert results["ours"].premiere_hit_ratio > results[p].premiere_hit_ratio, p


def test_the_planner_told_the_true_next_day_fills_and_beats_the_one_that_guesses(
    results: dict[str, Result],
) -> None:
    oracle = results["ours-oracle"]
    assert oracle.fill_moved > 0 and len(oracle.planned_moved) == TINY.days
    assert oracle.hit_ratio > results["ours"].hit_ratio > results["lru"].hit_ratio


def test_only_ours_fills_at_night_and_its_fills_run_inside_the_window(
    results: dict[str, Result],
) -> None:
    ours = results["ours"]
    assert ours.fill_moved > 0 and len(ours.planned_moved) == TINY.days
    assert sum(ours.fill_by_hour[h] for h in range(2, 10)) == ours.fill_moved
    for p in (*ONLINE, "belady"):
        assert results[p].fill_moved == 0


def test_the_same_seed_gives_the_same_trace_and_results() -> None:
    a, b = make_trace(TINY), make_trace(TINY)
    assert np.array_equal(a.time, b.time) and np.array_equal(a.obj, b.obj)
    assert replay(a, "ours", 0.05).hit == replay(b, "ours", 0.05).hit
    other = make_trace(replace(TINY, seed=4))
    assert not np.array_equal(other.obj[:100], a.obj[:100])


def test_nobody_watches_a_release_before_its_premiere() -> None:
    trace = make_trace(TINY)
    for title, premiere in trace.catalog.release_at.items():
        assert not np.any(trace.time[trace.title == title] < premiere)
    assert trace.time.max() < TINY.total_days * DAY


SMALL_RUN = ["--titles", "300", "--days", "1", "--sessions-per-day", "300", "--seeds", "6",
             "--no-exact", "--jobs", "1"]


def test_the_command_reports_held_out_seeds_sensitivity_and_writes_the_doc(
    tmp_path, capsys
) -> None:
    code = cachesim_main([*SMALL_RUN, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "held-out seed 6 " in out and "Targets on the held-out seeds" in out
    for row in ("| ours |", "| Belady-Size |", "| ours, planner told the true next day |",
                "prefetching bound", "| ours ≥ LRU + 10 points |",
                "| releases always in the top 50 |", "| no series binges |"):
        assert row in out, row
    assert (tmp_path / "cachesim.png").stat().st_size > 1000
    doc = (tmp_path / "cachesim.md").read_text()
    assert "| ours |" in doc
    # A rerun replaces the generated block instead of appending another.
    cachesim_main([*SMALL_RUN, "--no-sensitivity", "--out", str(tmp_path)])
    doc = (tmp_path / "cachesim.md").read_text()
    assert doc.count("Byte hit ratio on the held-out") == 1 and "Sensitivity" not in doc


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "10"], "between 0 and 1"),
        (["--sizes", "x"], "comma-separated"),
        (["--policies", "mru"], "unknown policy"),
        (["--appliances", "1"], "at least 2"),
        (["--fill-window", "nightly"], "HH:MM-HH:MM"),
        (["--titles", "20"], "too small"),
        (["--seeds", "x"], "list of seeds"),
        (["--headroom", "1.5"], "headroom"),
        (["--half-life-hours", "0"], "positive"),
    ],
)
def test_bad_arguments_get_a_clear_message_not_a_traceback(
    argv: list[str], message: str, capsys
) -> None:
    with pytest.raises(SystemExit) as exc:
        cachesim_main([*argv, "--no-write"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
