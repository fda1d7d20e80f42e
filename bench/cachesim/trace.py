"""A synthetic VOD catalog and request trace, deterministic for a seed.

Catalog: `titles` titles, 40% films (85-150 min) and 60% episodes (20-60 min), each
packaged as a ladder of renditions (bytes = bitrate × duration) cut into `chunk_seconds`
objects, the unit the edge caches (one object per rendition and chunk; segments of a chunk
travel together). The last `releases_per_day × (warmup_days + days)` titles are new
releases, one batch premiering at `release_hour` each day; they are in the catalog (with a
`release_at`) from the start, and nobody can watch them before their premiere.

Demand: titles are ranked by a random permutation and weighted Zipf(α), ``1/rank^α``, with
an independent log-normal drift per title and day (σ = `drift`), so tomorrow resembles
today without being today. A release is weighted like a title of rank drawn log-uniformly
from 1-`release_top`, times ``1 + spike·e^(-age/1 day)``: its premiere spike. Sessions
start along a residential daily curve (`HOURLY`, peak 20:00-22:00, trough 04:00-05:00);
each picks a title by weight, a rendition by `rendition_mix`, and watches the whole title
with probability `full_watch`, otherwise a uniform fraction of it; it asks for its chunks
in order, one per `chunk_seconds` of playback.

Steering: the site's appliances are ranked per title with `vcdn.hashing.rank` (the
function steering uses); a session goes to the first with probability 1 - `spill`, else to
the second (steering's load spreading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

from vcdn.hashing import rank
from vcdn.schemas import FileEntry, Rendition, TitleManifest

DAY: Final = 86400
HOUR: Final = 3600
# Relative sessions started per local hour: a typical residential broadband curve.
HOURLY: Final = (
    0.60, 0.40, 0.25, 0.15, 0.10, 0.10, 0.15, 0.25, 0.35, 0.40, 0.45, 0.50,
    0.55, 0.55, 0.55, 0.60, 0.65, 0.75, 0.85, 0.95, 1.00, 1.00, 0.90, 0.75,
)
LADDER: Final = (("1080p", 5_000_000), ("720p", 3_000_000), ("480p", 1_200_000),
                 ("360p", 600_000))


@dataclass(frozen=True)
class TraceConfig:
    seed: int = 1
    alpha: float = 0.8
    titles: int = 10_000
    days: int = 7
    warmup_days: int = 1
    sessions_per_day: int = 10_000
    appliances: int = 4
    chunk_seconds: int = 900
    releases_per_day: int = 10
    release_hour: int = 0
    release_top: int = 50
    spike: float = 4.0
    drift: float = 0.3
    full_watch: float = 0.35
    spill: float = 0.2
    # How far the trace departs from what the planner assumes (0 = the planner's world).
    #: share of releases that flop: ranked log-uniformly 50-5,000 instead of 1-50
    release_flops: float = 0.5
    #: per-title spill ~ spill·lognormal(σ), higher at peak hours, part of it to rank 3
    steering_noise: float = 0.5
    #: weekend days busier, and daytime titles (30%) watched more by day than at night
    diurnal: float = 0.5
    #: probability that a series episode is followed by the next one (binge watching)
    series: float = 0.5
    #: per-title rendition mix (Dirichlet) and sessions resuming mid-title
    file_skew: float = 1.0
    rendition_mix: tuple[float, ...] = (0.45, 0.30, 0.17, 0.08)
    ladder: tuple[tuple[str, int], ...] = field(default=LADDER)

    @property
    def total_days(self) -> int:
        return self.warmup_days + self.days


#: The trace the planner was designed on: every knob above at 0.
FRIENDLY: Final = {"release_flops": 0.0, "steering_noise": 0.0, "diurnal": 0.0,
                   "series": 0.0, "file_skew": 0.0}


@dataclass(frozen=True)
class Catalog:
    names: list[str]
    durations: np.ndarray  # seconds
    chunks: np.ndarray  # chunks per rendition
    offset: np.ndarray  # first object id of each title
    sizes: np.ndarray  # bytes per object id
    release_at: dict[int, float]  # title index -> premiere (sim seconds)
    manifests: list[TitleManifest]
    series: np.ndarray  # series id per title (-1: a film or a release)
    episode: np.ndarray  # episode number within its series

    @property
    def bytes(self) -> int:
        return int(self.sizes.sum())


@dataclass(frozen=True)
class Trace:
    config: TraceConfig
    catalog: Catalog
    appliances: list[str]
    time: np.ndarray  # float64 seconds since day 0 00:00 local, sorted
    obj: np.ndarray  # object id
    title: np.ndarray  # title index
    box: np.ndarray  # appliance index the request is steered to

    def __len__(self) -> int:
        return len(self.time)


def iso(seconds: float, epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch + seconds, dt.UTC).isoformat()


EPOCH: Final = 1_800_000_000.0 - (1_800_000_000 % DAY)  # sim t=0 is a UTC midnight


def make_catalog(cfg: TraceConfig, rng: np.random.Generator) -> Catalog:
    n = cfg.titles
    film = rng.random(n) < 0.4
    minutes = np.where(film, rng.uniform(85, 150, n), rng.uniform(20, 60, n))
    durations = np.round(minutes * 60.0)
    chunks = np.ceil(durations / cfg.chunk_seconds).astype(np.int64)
    per_title = chunks * len(cfg.ladder)
    offset = np.concatenate([[0], np.cumsum(per_title)[:-1]])
    sizes = np.empty(int(per_title.sum()), dtype=np.int64)
    names = [f"t{i:05d}" for i in range(n)]
    releases = cfg.releases_per_day * cfg.total_days
    release_at = {
        n - releases + k: float((k // cfg.releases_per_day) * DAY + cfg.release_hour * HOUR)
        for k in range(releases)
    }
    series = np.full(n, -1, dtype=np.int64)
    episode = np.zeros(n, dtype=np.int64)
    grouped = [i for i in range(n) if not film[i] and i not in release_at]
    sid = pos = 0
    while pos < len(grouped):
        length = int(rng.integers(6, 13))
        for e, i in enumerate(grouped[pos:pos + length]):
            series[i], episode[i] = sid, e
        sid += 1
        pos += length
    manifests = []
    for i in range(n):
        files = []
        pos = int(offset[i])
        for name, bps in cfg.ladder:
            for c in range(int(chunks[i])):
                seconds = min(cfg.chunk_seconds, durations[i] - c * cfg.chunk_seconds)
                size = int(bps * seconds / 8)
                sizes[pos] = size
                pos += 1
                files.append(FileEntry(f"{name}/chunk_{c:04d}.m4s", size, ""))
        rel = release_at.get(i)
        manifests.append(TitleManifest(
            title=names[i], duration=float(durations[i]), segment_seconds=4.0, format="fmp4",
            single_file=False,
            renditions=[Rendition(r, 0, 0, b, b, "", 25.0, f"{r}/index.m3u8")
                        for r, b in cfg.ladder],
            files=files,
            release_at=None if rel is None else iso(rel, EPOCH),
        ))
    return Catalog(names, durations, chunks, offset, sizes, release_at, manifests, series,
                   episode)


def _stream(cfg: TraceConfig, k: int) -> np.random.Generator:
    """An independent random stream per aspect of the trace, so that turning one knob
    leaves the others' draws as they were (the sensitivity runs compare like with like)."""
    return np.random.default_rng([cfg.seed, k])


def make_trace(cfg: TraceConfig, catalog: Catalog | None = None) -> Trace:
    rng = np.random.default_rng(cfg.seed)
    cat = catalog if catalog is not None else make_catalog(cfg, np.random.default_rng(cfg.seed))
    n = cfg.titles
    releases = np.array(sorted(cat.release_at), dtype=np.int64)
    release_times = np.array([cat.release_at[i] for i in releases])
    base = np.zeros(n)
    ordinary = np.setdiff1d(np.arange(n), releases)
    ranks = rng.permutation(len(ordinary)) + 1
    base[ordinary] = 1.0 / ranks.astype(float) ** cfg.alpha
    if cfg.series > 0:
        # An episode is as popular as its series (its first episode's draw), less so the
        # further into the series: viewers drop off.
        grouped = cat.series >= 0
        first = {int(sid): i for i, sid in zip(np.flatnonzero(grouped),
                                               cat.series[grouped], strict=True)
                 if cat.episode[i] == 0}
        lead = np.array([first[int(sid)] for sid in cat.series[grouped]])
        base[grouped] = base[lead] * 0.85 ** cat.episode[grouped]
    release_rank = np.exp(rng.uniform(0.0, np.log(cfg.release_top), len(releases)))
    flop = _stream(cfg, 1).random(len(releases)) < cfg.release_flops
    release_rank[flop] = np.exp(_stream(cfg, 2).uniform(np.log(50), np.log(5000), flop.sum()))
    release_base = 1.0 / release_rank**cfg.alpha
    hourly = np.array(HOURLY) / sum(HOURLY)
    daytime = _stream(cfg, 3).random(n) < 0.3
    busy_day = np.array([1.0 + 0.4 * cfg.diurnal * (d % 7 in (5, 6))
                         for d in range(cfg.total_days)])

    starts, titles = [], []
    for day in range(cfg.total_days):
        daily = base * rng.lognormal(0.0, cfg.drift, n)
        per_hour = rng.multinomial(int(cfg.sessions_per_day * busy_day[day]), hourly)
        for hour, count in enumerate(per_hour):
            if count == 0:
                continue
            t_mid = day * DAY + (hour + 0.5) * HOUR
            age = t_mid - release_times
            w = daily.copy()
            if cfg.diurnal > 0:
                by_day = 8 <= hour < 17
                w[daytime] *= (1.0 + cfg.diurnal) if by_day else (1.0 - 0.5 * cfg.diurnal)
            w[releases] = np.where(
                age >= 0, release_base * (1.0 + cfg.spike * np.exp(-age / DAY)), 0.0
            )
            t0 = day * DAY + hour * HOUR
            starts.append(t0 + rng.uniform(0, HOUR, count))
            titles.append(rng.choice(n, size=count, p=w / w.sum()))
    start = np.concatenate(starts)
    title = np.concatenate(titles)
    # A session that starts before a premiere inside its hour waits for it.
    for i, r in zip(releases, release_times, strict=True):
        early = (title == i) & (start < r)
        start[early] = r
    sessions = len(start)
    rend = rng.choice(len(cfg.ladder), size=sessions, p=np.array(cfg.rendition_mix))
    full = rng.random(sessions) < cfg.full_watch
    frac = np.where(full, 1.0, rng.random(sessions))
    spill_draw = rng.random(sessions)
    first_chunk = np.zeros(sessions, dtype=np.int64)
    if cfg.file_skew > 0:
        # Each title has its own rendition mix (kids' titles on tablets, films on TVs),
        # and some sessions resume where the viewer left off.
        fr = _stream(cfg, 4)
        mixes = fr.dirichlet(np.array(cfg.rendition_mix) * 20.0 / cfg.file_skew, n)
        u = fr.random(sessions)
        rend = (u[:, None] > np.cumsum(mixes[title], axis=1)).sum(axis=1)
        rend = np.minimum(rend, len(cfg.ladder) - 1)
        resume = fr.random(sessions) < 0.25 * min(1.0, cfg.file_skew)
        first_chunk = np.where(resume, (fr.random(sessions) * cat.chunks[title]).astype(np.int64),
                               0)
    if cfg.series > 0:
        # Binge watching: a session of an episode goes on with the next one with
        # probability `series`, watched from its start, right after the previous one.
        br = _stream(cfg, 5)
        nxt_title = np.full(n, -1, dtype=np.int64)
        grouped = np.flatnonzero(cat.series >= 0)
        same = cat.series[grouped[1:]] == cat.series[grouped[:-1]]
        nxt_title[grouped[:-1][same]] = grouped[1:][same]
        extra_s, extra_t, extra_r, extra_d = [], [], [], []
        cur_t, cur_s, cur_r = title.copy(), start.copy(), rend.copy()
        left = 1.0 - first_chunk / np.maximum(1, cat.chunks[cur_t])
        cur_s = cur_s + cat.durations[cur_t] * left
        go = (nxt_title[cur_t] >= 0) & (br.random(sessions) < cfg.series)
        while go.any():
            t_next = nxt_title[cur_t[go]]
            extra_t.append(t_next)
            extra_s.append(cur_s[go])
            extra_r.append(cur_r[go])
            extra_d.append(br.random(len(t_next)))
            cur_t, cur_r = t_next, cur_r[go]
            cur_s = cur_s[go] + cat.durations[t_next]
            go = (nxt_title[cur_t] >= 0) & (br.random(len(cur_t)) < cfg.series)
        if extra_t:
            k = sum(len(x) for x in extra_t)
            title = np.concatenate([title, *extra_t])
            start = np.concatenate([start, *extra_s])
            rend = np.concatenate([rend, *extra_r])
            full = np.concatenate([full, br.random(k) < cfg.full_watch])
            frac = np.concatenate([frac, np.where(full[sessions:], 1.0, np.concatenate(extra_d))])
            spill_draw = np.concatenate([spill_draw, br.random(k)])
            first_chunk = np.concatenate([first_chunk, np.zeros(k, dtype=np.int64)])
            sessions = len(start)
    watched = np.maximum(1, np.ceil(frac * cat.durations[title] / cfg.chunk_seconds))
    watched = np.minimum(watched, cat.chunks[title] - first_chunk).astype(np.int64)

    boxes = [f"oca{j}" for j in range(cfg.appliances)]
    ranked = np.empty((n, min(3, cfg.appliances)), dtype=np.int64)
    for i, name in enumerate(cat.names):
        order = rank(name, boxes)
        for j in range(ranked.shape[1]):
            ranked[i, j] = boxes.index(order[j])
    spill_p = np.full(sessions, cfg.spill)
    to_third = np.zeros(sessions, dtype=bool)
    if cfg.steering_noise > 0:
        # Steering spills when the first appliance is loaded: more at peak hours, more for
        # titles whose first appliance is busy; some spills go one appliance further.
        sr = _stream(cfg, 6)
        per_title = np.exp(sr.normal(0.0, cfg.steering_noise, n))
        load = np.array(HOURLY)[(start // HOUR).astype(np.int64) % 24] / np.mean(HOURLY)
        spill_p = np.clip(cfg.spill * per_title[title] * load ** cfg.steering_noise, 0.0, 0.6)
        to_third = sr.random(sessions) < 0.25 * min(1.0, cfg.steering_noise)
    spill = spill_draw < spill_p
    third = spill & to_third & (ranked.shape[1] > 2)
    box_s = np.where(spill, ranked[title, 1 % ranked.shape[1]], ranked[title, 0])
    box_s = np.where(third, ranked[title, ranked.shape[1] - 1], box_s)

    # Expand sessions into chunk requests.
    sess = np.repeat(np.arange(sessions), watched)
    within = np.arange(len(sess)) - np.repeat(np.cumsum(watched) - watched, watched)
    t = start[sess] + within * cfg.chunk_seconds
    tt = title[sess]
    obj = cat.offset[tt] + rend[sess] * cat.chunks[tt] + first_chunk[sess] + within
    end = cfg.total_days * DAY
    keep = t < end
    order = np.argsort(t[keep], kind="stable")
    return Trace(
        config=cfg, catalog=cat, appliances=boxes,
        time=t[keep][order], obj=obj[keep][order], title=tt[keep][order],
        box=box_s[sess][keep][order],
    )
