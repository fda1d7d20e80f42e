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
    rendition_mix: tuple[float, ...] = (0.45, 0.30, 0.17, 0.08)
    ladder: tuple[tuple[str, int], ...] = field(default=LADDER)

    @property
    def total_days(self) -> int:
        return self.warmup_days + self.days


@dataclass(frozen=True)
class Catalog:
    names: list[str]
    durations: np.ndarray  # seconds
    chunks: np.ndarray  # chunks per rendition
    offset: np.ndarray  # first object id of each title
    sizes: np.ndarray  # bytes per object id
    release_at: dict[int, float]  # title index -> premiere (sim seconds)
    manifests: list[TitleManifest]

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
    return Catalog(names, durations, chunks, offset, sizes, release_at, manifests)


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
    release_rank = np.exp(rng.uniform(0.0, np.log(cfg.release_top), len(releases)))
    release_base = 1.0 / release_rank**cfg.alpha
    hourly = np.array(HOURLY) / sum(HOURLY)

    starts, titles = [], []
    for day in range(cfg.total_days):
        daily = base * rng.lognormal(0.0, cfg.drift, n)
        per_hour = rng.multinomial(cfg.sessions_per_day, hourly)
        for hour, count in enumerate(per_hour):
            if count == 0:
                continue
            t_mid = day * DAY + (hour + 0.5) * HOUR
            age = t_mid - release_times
            w = daily.copy()
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
    watched = np.maximum(1, np.ceil(frac * cat.durations[title] / cfg.chunk_seconds))
    watched = np.minimum(watched, cat.chunks[title]).astype(np.int64)
    spill = rng.random(sessions) < cfg.spill

    boxes = [f"oca{j}" for j in range(cfg.appliances)]
    first = np.empty(n, dtype=np.int64)
    second = np.empty(n, dtype=np.int64)
    for i, name in enumerate(cat.names):
        order = rank(name, boxes)
        first[i] = boxes.index(order[0])
        second[i] = boxes.index(order[1 % len(order)])
    box_s = np.where(spill, second[title], first[title])

    # Expand sessions into chunk requests.
    sess = np.repeat(np.arange(sessions), watched)
    within = np.arange(len(sess)) - np.repeat(np.cumsum(watched) - watched, watched)
    t = start[sess] + within * cfg.chunk_seconds
    tt = title[sess]
    obj = cat.offset[tt] + rend[sess] * cat.chunks[tt] + within
    end = cfg.total_days * DAY
    keep = t < end
    order = np.argsort(t[keep], kind="stable")
    return Trace(
        config=cfg, catalog=cat, appliances=boxes,
        time=t[keep][order], obj=obj[keep][order], title=tt[keep][order],
        box=box_s[sess][keep][order],
    )
