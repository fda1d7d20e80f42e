"""Replay a trace through one site of appliances with a given eviction policy.

Each appliance is a byte-bounded cache driven through the real policy objects
(`edge.policies`) with the store's four calls, the way `edge.store` drives them: a hit is
`on_access`; a miss is filled from a peer of the site that holds the object, else from the
origin, then stored after `victims` made room. Policies:

- ``lru``, ``lfu``, ``s3fifo``: on-demand caching only.
- ``ours``: the `popularity` policy plus the nightly fill. When the fill window opens the
  control plane runs the real planner (`origin.control.planning.plan_fill`) on the decayed
  request counts the appliances reported each hour (`DecayedCounts`, the control API's
  half-life) and the catalog's release dates; each appliance unpins what left its
  manifest, pins what it already holds, and fetches the rest in manifest order, from a peer
  holding it or else the origin, at `fill_bps`, only while the window is open (the
  appliance's `FillWindow`). Objects of a pinned title fetched on a miss are pinned too,
  as in the store.
- ``ours-oracle``: the same, except that the planner is handed the true future: each
  title's bytes requested at the site in the 24 hours after the window opens, with no
  smoothing, no stickiness and no premiere boost (`oracle_plan`). What whole-title
  planning could reach with a perfect forecast.
- ``belady``, ``belady-size``: the feasible offline policies (`bench.cachesim.belady`),
  on-demand; the upper bounds on the offline optimum are `bench.cachesim.bounds`.
- ``belady-fill``: a feasible *prefetching* clairvoyant, held to the same fill window and
  rate as ours: when the window opens each appliance queues the objects it will be asked
  for before the next window opens, soonest first, and fetches them at `fill_bps` while
  the window is open, each admitted by Belady's rule against its real next request (and
  Belady on demand otherwise). The fair optimum lies between it and the prefetching bound.

Counting starts after the warm-up days. "Origin bytes" are everything the site pulls from
the origin (miss fills and nightly fills), bucketed by local hour.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import numpy as np

from appliance.schedule import FillWindow
from bench.cachesim.belady import NEVER, Belady, BeladySize
from bench.cachesim.trace import DAY, EPOCH, HOUR, Trace
from edge.policies import make_policy
from origin.control.planning import PlanSettings, plan_fill
from origin.control.planning.placement import PlacementRules
from origin.control.planning.predict import DecayedCounts, ReleaseBoost
from vcdn.schemas import ApplianceView, FillManifest

SITE: Final = "site1"
OFFLINE: Final = {"belady": Belady, "belady-size": BeladySize, "belady-fill": Belady}
HALF_LIFE: Final = 12 * HOUR  # origin.control.settings: popularity_half_life default
PLANNED: Final = ("ours", "ours-oracle")


#: The oracle planner's own shares and headroom, chosen for it the same way as the real
#: planner's (`python -m bench.cachesim.tune --policy ours-oracle --knobs headroom,spill`,
#: seeds 1-5 only; mean 0.6793 there, against 0.6552 with the real planner's 0.3 and
#: (0.7, 0.3)): knowing tomorrow, it needs little room for misses.
ORACLE_RULES: Final = PlacementRules(spread=(0.8, 0.2), headroom=0.05, stickiness=0.0)


def oracle_plan(plan: PlanSettings, rules: PlacementRules = ORACLE_RULES) -> PlanSettings:
    """`plan` for a planner that knows tomorrow: the true demand needs no memory, no
    stickiness and no premiere guess (the boost's reference is the smallest title's demand
    and it fades in a second, so truth always wins)."""
    return PlanSettings(
        rules=replace(rules, stickiness=0.0),
        boost=ReleaseBoost(lead=plan.boost.lead, rank=10**9, fade=1.0),
        global_weight=plan.global_weight, memory=0.0,
    )


@dataclass(frozen=True)
class SiteConfig:
    fill_window: str = "02:00-10:00"
    peak_hours: tuple[int, int] = (18, 23)  # [start, end) local hours
    fill_bps: float = 4e9  # per appliance
    half_life: float = HALF_LIFE
    plan: PlanSettings = field(default_factory=PlanSettings)
    oracle_rules: PlacementRules = ORACLE_RULES  # the oracle planner's (``ours-oracle``)


@dataclass
class Result:
    policy: str
    alpha: float
    cache_share: float
    requested: int = 0
    hit: int = 0
    peer: int = 0
    origin_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    fill_moved: int = 0  # bytes fetched by nightly fills (peer or origin)
    fill_by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    fill_origin: int = 0
    planned_moved: list[int] = field(default_factory=list)
    premiere_requested: int = 0  # bytes asked for titles in their first day
    premiere_hit: int = 0
    seconds: float = 0.0

    @property
    def hit_ratio(self) -> float:
        return self.hit / self.requested if self.requested else 0.0

    @property
    def premiere_hit_ratio(self) -> float:
        return self.premiere_hit / self.premiere_requested if self.premiere_requested else 0.0

    @property
    def from_site(self) -> float:
        """Share of requested bytes the site served without going to the origin on the
        request path (hits, plus misses filled from a peer)."""
        return (self.hit + self.peer) / self.requested if self.requested else 0.0

    @property
    def origin(self) -> int:
        return sum(self.origin_by_hour)


def next_requests(trace: Trace) -> np.ndarray:
    """For request i, the index of the next request of the same object on the same
    appliance (NEVER if none): Belady's oracle."""
    n = len(trace)
    nobj = len(trace.catalog.sizes)
    comp = trace.box.astype(np.int64) * nobj + trace.obj
    order = np.lexsort((np.arange(n), comp))
    out = np.full(n, NEVER, dtype=np.int64)
    same = comp[order[1:]] == comp[order[:-1]]
    out[order[:-1][same]] = order[1:][same]
    return out


def make(policy: str) -> object:
    """The real policy object for a simulator policy name (`edge.policies`)."""
    return make_policy("popularity" if policy in PLANNED else policy)


class _Box:
    """One appliance: its cache index, policy, pins and fill queue."""

    __slots__ = ("cache", "clock", "pinned_titles", "policy", "queue", "used")

    def __init__(self, policy: object) -> None:
        self.policy = policy
        self.cache: dict[int, int] = {}
        self.used = 0
        self.pinned_titles: set[int] = set()
        self.queue: deque[int] = deque()
        self.clock = 0.0


def replay(
    trace: Trace,
    policy: str,
    cache_share: float,
    site: SiteConfig = SiteConfig(),
    oracle: np.ndarray | None = None,
) -> Result:
    started = time.perf_counter()
    cfg = trace.config
    cat = trace.catalog
    n = len(trace.appliances)
    capacity = int(cache_share * cat.bytes / n)
    planned = policy in PLANNED
    oracle_planner = policy == "ours-oracle"
    plan_settings = oracle_plan(site.plan, site.oracle_rules) if oracle_planner else site.plan
    counting = planned and not oracle_planner
    clairvoyant_fill = policy == "belady-fill"
    if policy in OFFLINE:
        boxes = [_Box(OFFLINE[policy]()) for _ in range(n)]
        if oracle is None:
            oracle = next_requests(trace)
        nxt = oracle.tolist()
    else:
        boxes = [_Box(make(policy)) for _ in range(n)]
        nxt = None
    result = Result(policy, cfg.alpha, cache_share)
    window = FillWindow.parse(site.fill_window)
    open_hours = [window.is_open(datetime(2000, 1, 1, h, 0)) for h in range(24)]
    open_hour = window.start // 60
    sizes = cat.sizes.tolist()
    offset = cat.offset.tolist()
    nfiles = (cat.chunks * len(cfg.ladder)).tolist()
    index = {name: i for i, name in enumerate(cat.names)}
    measure_from = cfg.warmup_days * DAY
    others = [[boxes[j] for j in range(n) if j != i] for i in range(n)]
    counts: dict[int, int] = {}
    history = DecayedCounts(site.half_life)
    views = [
        ApplianceView(id=a, site=SITE, public_url=f"http://{a}.test", capacity_bytes=capacity,
                      asn=0, lat=0.0, lon=0.0, prefixes=[], state="healthy")
        for a in trace.appliances
    ]
    manifests: dict[str, FillManifest] | None = None
    rate = site.fill_bps / 8.0
    origin = result.origin_by_hour

    def store(box: _Box, key: int, size: int, pinned: bool) -> None:
        pol = box.policy
        cache = box.cache
        need = box.used + size - capacity
        if need > 0:
            for victim in pol.victims(need):
                vsize = cache.pop(victim)
                pol.on_remove(victim)
                box.used -= vsize
                need -= vsize
                if need <= 0:
                    break
        if need > 0:
            return  # nothing left to evict (a pinned object larger than the headroom)
        pol.on_insert(key, size, pinned)
        cache[key] = size
        box.used += size

    def next_open(t: float) -> float:
        h = int(t // HOUR)
        if open_hours[h % 24]:
            return t
        while not open_hours[h % 24]:
            h += 1
        return float(h * HOUR)

    def advance(t: float) -> float:
        """Complete the fills due by `t`; returns when to look again."""
        soonest = float("inf")
        for b, box in enumerate(boxes):
            q = box.queue
            while q:
                start = next_open(box.clock)
                key = q[0]
                size = sizes[key]
                done = start + size / rate
                if done > t:
                    soonest = min(soonest, done)
                    box.clock = start
                    break
                q.popleft()
                box.clock = done
                if key in box.cache:
                    continue
                from_peer = any(key in o.cache for o in others[b])
                if done >= measure_from:
                    result.fill_moved += size
                    result.fill_by_hour[int(done // HOUR) % 24] += size
                    if not from_peer:
                        result.fill_origin += size
                        origin[int(done // HOUR) % 24] += size
                if clairvoyant_fill:
                    box.policy.see(next_after(b, key, done), 0)  # type: ignore[attr-defined]
                    if not box.policy.admits(size, capacity - box.used):  # type: ignore[attr-defined]
                        continue
                store(box, key, size, True)
        return soonest

    def apply(plan: dict[str, FillManifest], now: float) -> None:
        for b, box in enumerate(boxes):
            manifest = plan[trace.appliances[b]]
            wanted = [index[ft.title] for ft in manifest.titles]
            wanted_set = set(wanted)
            pol, cache = box.policy, box.cache
            for ti in box.pinned_titles - wanted_set:
                for key in range(offset[ti], offset[ti] + nfiles[ti]):
                    if key in cache:
                        pol.on_insert(key, cache[key], False)
            box.queue.clear()
            for ti in wanted:
                fresh = ti not in box.pinned_titles
                for key in range(offset[ti], offset[ti] + nfiles[ti]):
                    if key in cache:
                        if fresh:
                            pol.on_insert(key, cache[key], True)
                    else:
                        box.queue.append(key)
            box.pinned_titles = wanted_set
            box.clock = now

    if clairvoyant_fill:
        comp = trace.box.astype(np.int64) * len(sizes) + trace.obj
        by_comp = np.lexsort((np.arange(len(trace)), comp))
        comp_sorted = comp[by_comp]
        time_sorted = trace.time[by_comp]

    def next_after(b: int, key: int, t: float) -> int:
        """Index of the next request of `key` on appliance `b` at or after `t`."""
        c = b * len(sizes) + key
        lo = int(np.searchsorted(comp_sorted, c, side="left"))
        hi = int(np.searchsorted(comp_sorted, c, side="right"))
        k = lo + int(np.searchsorted(time_sorted[lo:hi], t, side="left"))
        return int(by_comp[k]) if k < hi else NEVER

    def clairvoyant_plan(t_hour: float) -> None:
        nonlocal next_fill
        lo = int(np.searchsorted(trace.time, t_hour, side="left"))
        hi = int(np.searchsorted(trace.time, t_hour + DAY, side="left"))
        for b, box in enumerate(boxes):
            box.queue.clear()
            box.clock = t_hour
            wanted: dict[int, None] = {}
            for i in np.flatnonzero(trace.box[lo:hi] == b).tolist():
                key = objs[lo + i]
                if key not in wanted and key not in box.cache:
                    wanted[key] = None
            budget = capacity
            for key in wanted:
                budget -= sizes[key]
                if budget < 0:
                    break
                box.queue.append(key)
        next_fill = advance(t_hour)

    def future(t_hour: float) -> dict[str, dict[str, float]]:
        """The site's true demand in the next 24 hours: bytes requested per title."""
        lo = int(np.searchsorted(trace.time, t_hour, side="left"))
        hi = int(np.searchsorted(trace.time, t_hour + DAY, side="left"))
        got = np.bincount(trace.title[lo:hi], weights=cat.sizes[trace.obj[lo:hi]],
                          minlength=len(cat.names))
        return {SITE: {cat.names[i]: float(got[i]) for i in np.flatnonzero(got).tolist()}}

    def hour_tick(t_hour: float) -> None:
        nonlocal manifests, next_fill
        if clairvoyant_fill and int(t_hour // HOUR) % 24 == open_hour:
            clairvoyant_plan(t_hour)
        if not planned:
            return
        now = EPOCH + t_hour
        for ti, c in counts.items():
            history.add(SITE, cat.names[ti], c, now)
        counts.clear()
        if int(t_hour // HOUR) % 24 == open_hour:
            new = plan_fill(
                future(t_hour) if oracle_planner else history.table(now), cat.manifests,
                views, manifests, now=now, settings=plan_settings,
            )
            if t_hour >= measure_from and manifests is not None:
                old = {a: {x.title for x in m.titles} for a, m in manifests.items()}
                result.planned_moved.append(sum(
                    x.bytes for a, m in new.items() for x in m.titles if x.title not in old[a]
                ))
            manifests = new
            apply(new, t_hour)
            next_fill = advance(t_hour)

    times = trace.time.tolist()
    objs = trace.obj.tolist()
    titles = trace.title.tolist()
    where = trace.box.tolist()
    hour_end = float(HOUR)
    next_fill = float("inf")
    hit = peer = requested = premiere = premiere_hit = 0
    never = float("inf")
    release = [never] * len(cat.names)
    for ti, at in cat.release_at.items():
        release[ti] = at
    for i, t in enumerate(times):
        while t >= hour_end:
            hour_tick(hour_end)
            hour_end += HOUR
        if t >= next_fill:
            next_fill = advance(t)
        key = objs[i]
        b = where[i]
        box = boxes[b]
        size = sizes[key]
        ti = titles[i]
        if counting:
            counts[ti] = counts.get(ti, 0) + 1
        measured = t >= measure_from
        if nxt is not None:
            box.policy.see(nxt[i], i)  # type: ignore[attr-defined]
        new_title = 0.0 <= t - release[ti] < DAY
        if measured:
            requested += size
            if new_title:
                premiere += size
        if key in box.cache:
            box.policy.on_access(key)  # type: ignore[attr-defined]
            if measured:
                hit += size
                if new_title:
                    premiere_hit += size
            continue
        from_peer = False
        for o in others[b]:
            if key in o.cache:
                from_peer = True
                break
        if measured:
            if from_peer:
                peer += size
            else:
                origin[int(t // HOUR) % 24] += size
        if size > capacity or (
            nxt is not None and not box.policy.admits(size, capacity - box.used)  # type: ignore[attr-defined]
        ):
            continue
        store(box, key, size, ti in box.pinned_titles)
    result.hit, result.peer, result.requested = hit, peer, requested
    result.premiere_requested, result.premiere_hit = premiere, premiere_hit
    result.seconds = time.perf_counter() - started
    return result
