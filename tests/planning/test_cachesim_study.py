"""The held-out study's pieces: the tuner's search, the target's verdicts and the exact
optimum's table on a trace small enough for the integer program."""

from __future__ import annotations

from dataclasses import replace

from bench.cachesim import study, tune
from origin.control.planning import PlanSettings


def test_the_search_moves_a_knob_only_for_a_real_gain_and_keeps_to_its_grid() -> None:
    def objective(s: PlanSettings) -> float:
        # Best at headroom 0.3; stickiness gains less than the search's minimum.
        return -abs(s.rules.headroom - 0.3) + 0.0001 * s.rules.stickiness

    best, score = tune.search(PlanSettings(), objective, budget=60.0, log=lambda _: None)
    assert best.rules.headroom == 0.3
    assert best.rules.stickiness == PlanSettings().rules.stickiness
    assert score == objective(best)


def test_the_search_stops_when_its_time_is_spent() -> None:
    calls: list[PlanSettings] = []

    def objective(s: PlanSettings) -> float:
        calls.append(s)
        return 0.0

    tune.search(PlanSettings(), objective, budget=0.0, log=lambda _: None)
    assert len(calls) == 1  # the start only


def test_tuning_and_held_out_seeds_do_not_overlap() -> None:
    assert not set(tune.TUNING_SEEDS) & set(study.HELD_OUT)


def _run(lru: float, ours: float, fill: float, bound: float) -> dict[str, float]:
    return {"lru": lru, "ours": ours, "belady-fill": fill, "fair-bound": bound}


def test_the_fair_target_is_missed_only_when_even_the_feasible_fill_is_3_points_ahead() -> None:
    def verdict(runs: dict[int, dict[str, float]]) -> str:
        row = next(x for x in study.target_table(runs) if "lower end" in x)
        return row.rsplit("|", 2)[1].strip()

    assert verdict({6: _run(0.5, 0.62, 0.64, 0.645)}) == "yes"
    assert verdict({6: _run(0.5, 0.62, 0.66, 0.70)}) == "no"
    assert verdict({6: _run(0.5, 0.62, 0.64, 0.70)}).startswith("undecided")
    up = next(x for x in study.target_table({6: _run(0.5, 0.62, 0.64, 0.645),
                                             7: _run(0.5, 0.58, 0.6, 0.6)})
              if "LRU + 10" in x)
    assert "+10.0 ± 2.8 (+8.0 to +12.0)" in up and up.endswith("| no |")


def test_on_a_small_trace_the_heuristics_are_under_the_exact_optimum_and_bounds_over() -> None:
    cfg = replace(study.SMALL, seed=6, sessions_per_day=80)
    r = study.evaluate_small(cfg, 0.05)
    eps = 1e-9
    assert r["lru"] <= r["exact"] + eps
    assert r["belady"] <= r["exact"] + eps and r["belady-size"] <= r["exact"] + eps
    assert r["exact"] <= r["dual"] + eps <= r["pfoo-l"] + 2 * eps
    table = study.exact_table({(s, 0.05): r for s in study.SMALL_SEEDS})
    assert table[-1].startswith("| 5% |")
