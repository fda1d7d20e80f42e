"""`python -m bench.cachesim`: replay synthetic VOD traces through the real eviction and
fill-planning code; print tables; write docs/cachesim.png and the table in docs/cachesim.md.

Each (α, cache size) pair is one task; a worker builds an α's trace once and replays it
for every policy. Deterministic for a seed (the tasks share nothing but the seed).
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
from bench.cachesim.replay import HALF_LIFE, Result, SiteConfig, next_requests, replay
from bench.cachesim.report import detail_table, hit_table, plot, targets, write_doc
from bench.cachesim.trace import Trace, TraceConfig, make_trace
from bench.record import Run
from origin.control.planning import PlanSettings
from origin.control.planning.placement import HEADROOM, STICKINESS, PlacementRules
from origin.control.planning.plan import MEMORY
from vcdn.errors import ConfigError

POLICIES: Final = ("lru", "lfu", "s3fifo", "ours", "belady")
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
    bad = [n for n in names if n not in POLICIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown policy {bad[0] if bad else text!r}; choose from {', '.join(POLICIES)}"
        )
    return names


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


def record(results: list[Result], cfg: TraceConfig, args: argparse.Namespace) -> None:
    """bench/results/cachesim.json: byte hit ratios of every policy, ours judged against LRU
    and the offline optimum in points (a simulation: no errors, nothing to byte-check)."""
    run = Run("cachesim", settings={k: v for k, v in vars(args).items() if k != "out"}
              | {"out": str(args.out)})
    by = {(r.policy, r.alpha, r.cache_share): r for r in results}
    for r in results:
        if r.policy != "ours":
            continue
        key = (r.alpha, r.cache_share)
        ours = {"byte_hit_ratio": r.hit_ratio, "from_site": r.from_site,
                "premiere_hit_ratio": r.premiere_hit_ratio}
        for other in ("lru", "belady"):
            o = by.get((other, *key))
            if o is not None:
                ours[f"points_over_{other}"] = (r.hit_ratio - o.hit_ratio) * 100
        lru = by.get(("lru", *key))
        run.case(
            f"alpha{r.alpha:g}_cache{r.cache_share:.0%}".replace("%", "pct"),
            ours=ours, theirs={"byte_hit_ratio": lru.hit_ratio} if lru else None,
            server="lru (simulated)" if lru else None, ratio_of="byte_hit_ratio",
            target=">= 10" if lru else None,
            target_of="points_over_lru" if lru else "ratio", unit="byte hit ratio",
            title=f"cache = {r.cache_share:.0%} of the catalog, α = {r.alpha:g}",
            notes=f"seed {cfg.seed}, {cfg.titles} titles, {cfg.days} days; all policies: "
                  + ", ".join(f"{p} {by[(p, *key)].hit_ratio:.3f}" for p in args.policies
                              if (p, *key) in by),
        )
    run.save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cachesim", description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--titles", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sessions-per-day", type=int, default=10_000)
    ap.add_argument("--chunk-seconds", type=int, default=900,
                    help="seconds of video per cached object (per rendition)")
    ap.add_argument("--appliances", type=int, default=4)
    ap.add_argument("--alphas", type=_floats, default=[0.8, 1.0])
    ap.add_argument("--sizes", type=_floats, default=[0.05, 0.10, 0.20],
                    help="site cache sizes as shares of the catalog's bytes")
    ap.add_argument("--policies", type=_policies, default=list(POLICIES))
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
    results = simulate(cfg, args.alphas, args.sizes, args.policies, site, args.jobs)
    elapsed = time.perf_counter() - started
    cpu = sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_SELF),
                  resource.getrusage(resource.RUSAGE_CHILDREN))
    )

    block = [
        f"`python -m bench.cachesim --seed {cfg.seed} --titles {cfg.titles} --days {cfg.days} "
        f"--sessions-per-day {cfg.sessions_per_day} --appliances {cfg.appliances}"
        f"{extra}` "
        f"({elapsed:.0f} s wall, {cpu:.0f} s CPU, --jobs {args.jobs}):",
        "",
    ]
    for alpha in args.alphas:
        block += [*hit_table(results, alpha, args.sizes, args.policies), ""]
    for alpha in args.alphas:
        mid = 0.10 if 0.10 in args.sizes else args.sizes[len(args.sizes) // 2]
        block += [*detail_table(results, alpha, mid, args.policies, site, cfg.days), ""]
    block += targets(results, site)
    print("\n".join(block))
    lru = {(r.alpha, r.cache_share): r for r in results if r.policy == "lru"}
    for r in results:
        base = lru.get((r.alpha, r.cache_share))
        if base is not None and base.hit_ratio and r.policy != "lru":
            print(f"ratio {r.policy}/lru hit ratio α={r.alpha} size={r.cache_share:.0%}: "
                  f"{r.hit_ratio / base.hit_ratio:.2f}")
    print(f"simulated {len(results)} runs in {elapsed:.1f} s wall, {cpu:.1f} s CPU")
    record(results, cfg, args)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        write_doc(args.out / "cachesim.md", block)
        plot(results, args.alphas, args.sizes, args.policies, args.out / "cachesim.png")
        print(f"wrote {args.out / 'cachesim.md'} and {args.out / 'cachesim.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
