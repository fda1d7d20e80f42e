"""`python -m bench.cachesim`: replay synthetic VOD traces through the real eviction and
fill-planning code; print tables; write docs/cachesim.png and the table in docs/cachesim.md.

By default: the held-out seeds 6-10 at the target's setting (every policy, the oracle
planner, the bounds), the sensitivity rows and the exact optimum on small traces
(`bench.cachesim.study`). `--grid` adds the α × cache-size tables on `--seed` (1, a
tuning seed). Each trace is one task; deterministic for its seed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Final

from appliance.schedule import FillWindow
from bench.cachesim import study
from bench.cachesim.replay import HALF_LIFE, Result, SiteConfig, next_requests, replay
from bench.cachesim.report import (
    detail_table,
    hit_table,
    plot,
    plot_held_out,
    targets,
    write_doc,
)
from bench.cachesim.trace import Trace, TraceConfig, make_trace
from bench.record import Run
from origin.control.planning import PlanSettings
from origin.control.planning.placement import HEADROOM, STICKINESS, PlacementRules
from origin.control.planning.plan import MEMORY
from vcdn.errors import ConfigError

POLICIES: Final = ("lru", "lfu", "s3fifo", "ours", "belady")
CHOICES: Final = (*POLICIES, "ours-oracle", "belady-size", "belady-fill")
ROOT: Final = Path(__file__).resolve().parents[2]

_traces: dict[float, tuple[Trace, object]] = {}


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


def _policies(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in CHOICES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown policy {bad[0] if bad else text!r}; choose from {', '.join(CHOICES)}"
        )
    return names


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of seeds"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one seed")
    return values


def run_task(cfg: TraceConfig, size: float, policies: list[str], site: SiteConfig
             ) -> list[Result]:
    cached = _traces.get(cfg.alpha)
    if cached is None:
        trace = make_trace(cfg)
        cached = (trace, next_requests(trace))
        _traces[cfg.alpha] = cached
    trace, oracle = cached
    return [replay(trace, p, size, site, oracle=oracle) for p in policies]  # type: ignore[arg-type]


def simulate(cfg: TraceConfig, alphas: list[float], sizes: list[float], policies: list[str],
             site: SiteConfig, jobs: int) -> list[Result]:
    tasks = [(replace(cfg, alpha=a), s) for a in alphas for s in sizes]
    if jobs <= 1:
        return [r for c, s in tasks for r in run_task(c, s, policies, site)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_task, c, s, policies, site) for c, s in tasks]
        return [r for f in futures for r in f.result()]


def run_study(tasks: list[study.Task], site: SiteConfig, jobs: int
              ) -> list[tuple[study.Task, dict[str, float]]]:
    if jobs <= 1:
        return [(t, t.run(site)) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(t.run, site) for t in tasks]
        return [(t, f.result()) for t, f in zip(tasks, futures, strict=True)]


def record(held: dict[int, dict[str, float]], cfg: TraceConfig, args: argparse.Namespace
           ) -> None:
    """bench/results/cachesim.json: the held-out seeds' byte hit ratios and the target's
    gaps, one sample per seed (a simulation: no errors, nothing to byte-check)."""
    run = Run("cachesim", settings={k: v for k, v in vars(args).items() if k != "out"}
              | {"out": str(args.out)})
    seeds = sorted(held)
    if not seeds:
        run.save()
        return
    per = {p: [held[s][p] for s in seeds] for p in held[seeds[0]]}
    g = [study.gaps(held[s]) for s in seeds]
    span = study.span(seeds)
    common = dict(unit="byte hit ratio", seeds=seeds, byte_hit_ratio=per,
                  notes=f"held-out {span} (tuned on 1-5), {cfg.titles} titles, {cfg.days} "
                        "days, median over seeds")
    run.case(
        "heldout_ours_over_lru",
        ours={"byte_hit_ratio": per["ours"], "points_over_lru": [x["ours_minus_lru"] for x in g]},
        theirs={"byte_hit_ratio": per["lru"]}, server="lru (simulated)",
        ratio_of="byte_hit_ratio", target=">= 10", target_of="points_over_lru",
        title=f"cache = {study.SHARE:.0%} of the catalog, α = {study.ALPHA:g}, held-out {span}",
        **common,
    )
    run.case(
        "heldout_ours_below_fair_optimum",
        ours={"points_below_fair_low": [x["fair_low_minus_ours"] for x in g],
              "points_below_fair_high": [x.get("fair_high_minus_ours", float("nan"))
                                         for x in g]},
        target="<= 3", target_of="points_below_fair_low",
        title="points under the fair (prefetching) optimum, at least (clairvoyant fill)",
        **common,
    )
    run.save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cachesim", description=__doc__)
    ap.add_argument("--seeds", type=_ints, default=list(study.HELD_OUT),
                    help="the held-out seeds reported (the planner was tuned on 1-5)")
    ap.add_argument("--sensitivity-seed", type=int, default=study.HELD_OUT[0],
                    help="seed of the sensitivity rows")
    ap.add_argument("--no-sensitivity", action="store_true")
    ap.add_argument("--no-exact", action="store_true",
                    help="skip the exact optimum on small traces")
    ap.add_argument("--grid", action="store_true",
                    help="also the α × cache-size tables on --seed")
    ap.add_argument("--seed", type=int, default=1, help="seed of the --grid tables")
    ap.add_argument("--titles", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sessions-per-day", type=int, default=10_000)
    ap.add_argument("--chunk-seconds", type=int, default=900,
                    help="seconds of video per cached object (per rendition)")
    ap.add_argument("--appliances", type=int, default=4)
    ap.add_argument("--alphas", type=_floats, default=[0.8, 1.0])
    ap.add_argument("--sizes", type=_floats, default=[0.05, 0.10, 0.20],
                    help="site cache sizes as shares of the catalog's bytes")
    ap.add_argument("--policies", type=_policies, default=list(POLICIES),
                    help="policies of the --grid tables")
    ap.add_argument("--fill-window", default="02:00-10:00")
    ap.add_argument("--fill-gbps", type=float, default=4.0, help="nightly fill rate per appliance")
    ap.add_argument("--half-life-hours", type=float, default=HALF_LIFE / 3600,
                    help="popularity half-life (the control API's default)")
    ap.add_argument("--headroom", type=float, default=HEADROOM,
                    help="share of each appliance left to on-demand objects by the planner")
    ap.add_argument("--stickiness", type=float, default=STICKINESS,
                    help="extra value the planner gives to what an appliance already holds")
    ap.add_argument("--plan-memory-hours", type=float, default=MEMORY / 3600,
                    help="half-life of the previous plan's predictions (0: no smoothing)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "docs",
                    help="where cachesim.md's table and cachesim.png go")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    for name in ("titles", "days", "sessions_per_day", "chunk_seconds", "appliances", "jobs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.appliances < 2:
        ap.error("--appliances must be at least 2 (a site with peers)")
    if any(not 0 < s < 1 for s in args.sizes):
        ap.error("--sizes are shares of the catalog, between 0 and 1 (e.g. 0.1)")
    if args.half_life_hours <= 0 or args.fill_gbps <= 0:
        ap.error("--half-life-hours and --fill-gbps must be positive")
    if args.plan_memory_hours < 0:
        ap.error("--plan-memory-hours must not be negative")
    try:
        FillWindow.parse(args.fill_window)
        rules = PlacementRules(headroom=args.headroom, stickiness=args.stickiness)
    except (ConfigError, ValueError) as exc:
        ap.error(str(exc))
    site = SiteConfig(
        fill_window=args.fill_window, fill_bps=args.fill_gbps * 1e9,
        half_life=args.half_life_hours * 3600,
        plan=PlanSettings(rules=rules, memory=args.plan_memory_hours * 3600),
    )
    cfg = TraceConfig(
        seed=args.seed, titles=args.titles, days=args.days,
        sessions_per_day=args.sessions_per_day, appliances=args.appliances,
        chunk_seconds=args.chunk_seconds,
    )
    if cfg.releases_per_day * cfg.total_days >= cfg.titles:
        ap.error("--titles is too small for the daily releases")
    extra = "".join(
        f" --{name.replace('_', '-')} {getattr(args, name):g}"
        for name, default in (("half_life_hours", HALF_LIFE / 3600), ("headroom", HEADROOM),
                              ("stickiness", STICKINESS), ("fill_gbps", 4.0),
                              ("plan_memory_hours", MEMORY / 3600))
        if getattr(args, name) != default
    )
    started = time.perf_counter()
    todo = study.tasks(cfg, args.seeds, None if args.no_sensitivity else args.sensitivity_seed,
                       not args.no_exact)
    done = run_study(todo, site, args.jobs)
    results = (simulate(cfg, args.alphas, args.sizes, args.policies, site, args.jobs)
               if args.grid else [])
    elapsed = time.perf_counter() - started
    cpu = sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF),
                  resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    held = {int(t.label): r for t, r in done if t.kind == "held-out"}
    sens = {t.label: r for t, r in done if t.kind == "sensitivity"}
    if args.sensitivity_seed in held:
        sens["default"] = held[args.sensitivity_seed]
    small = {(t.cfg.seed, t.share): r for t, r in done if t.kind == "small"}

    block = [
        f"`python -m bench.cachesim --seeds {','.join(map(str, args.seeds))} "
        f"--titles {cfg.titles} --days {cfg.days} "
        f"--sessions-per-day {cfg.sessions_per_day} --appliances {cfg.appliances}"
        f"{extra}{' --grid' if args.grid else ''}` "
        f"({elapsed:.0f} s wall, {cpu:.0f} s CPU, --jobs {args.jobs}):",
        "",
        *study.held_out_table(held), "",
        *study.target_table(held), "",
    ]
    if sens.get("default") is not None and len(sens) > 1:
        block += [*study.sensitivity_table(sens, args.sensitivity_seed), ""]
    if small:
        block += [*study.exact_table(small), ""]
    if args.grid:
        block += [f"Grid on seed {cfg.seed} (a tuning seed):", ""]
        for alpha in args.alphas:
            block += [*hit_table(results, alpha, args.sizes, args.policies), ""]
        for alpha in args.alphas:
            mid = 0.10 if 0.10 in args.sizes else args.sizes[len(args.sizes) // 2]
            block += [*detail_table(results, alpha, mid, args.policies, site, cfg.days), ""]
        block += [*targets(results, site), ""]
    while block and not block[-1]:
        block.pop()
    print("\n".join(block))
    print(f"simulated {len(done)} traces{' and the grid' if args.grid else ''} in "
          f"{elapsed:.1f} s wall, {cpu:.1f} s CPU")
    record(held, cfg, args)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        write_doc(args.out / "cachesim.md", block)
        plot_held_out(held, args.out / "cachesim.png")
        if args.grid:
            plot(results, args.alphas, args.sizes, args.policies, args.out / "cachesim-grid.png")
        print(f"wrote {args.out / 'cachesim.md'} and {args.out / 'cachesim.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
