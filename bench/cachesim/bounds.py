"""Upper bounds on the offline optimum's byte hit ratio, with and without an off-peak fill.

Every hit is the end of an *interval*: the object was in the appliance's cache from some
start until the request. For a demand-filled cache the start is the object's previous
request on that appliance (it can only enter the cache when it is asked for). A cache that
may also prefetch during the fill window can start an interval at any moment a window is
open, paying the object's bytes from that window's fill budget (fill rate × window length,
the cap the nightly fill has).

At every moment the intervals a cache holds fit in its capacity C; integrated over the
horizon T, the intervals chosen cost ``Σ size × length ≤ C × T``. Dropping the per-moment
constraint for that single integral is the PFOO-L relaxation of Berger, Beckmann and
Harchol-Balter ("Practical Bounds on Optimal Caching with Variable Object Sizes",
SIGMETRICS 2018): a fractional knapsack. Its optimum is a *lower bound on the byte miss
ratio* (an upper bound on the hit ratio) of every policy, offline ones included. For byte
hit ratio an interval is worth its size and costs size × length, so the greedy order is
shortest interval first (PFOO-L's size × length order is the one for object hit ratio).

With prefetching each request has two candidate intervals: from its previous request
(free of fill bandwidth) or from the latest open moment of a fill window after that
(shorter, but paid from that window's budget). Without the bandwidth constraints the
greedy takes the shorter one; if that respects every window's budget it is the LP optimum
too, otherwise the LP (both candidates, x_demand + x_fill ≤ 1, the integral and one
budget per window) is solved with HiGHS (`scipy.optimize.linprog`).

Both bounds are per appliance (each has its own cache and fill budget); a site's bound is
the sum of its appliances'. Only requests after the warm-up count as hits, and intervals
larger than the cache are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

EPS: Final = 1e-9


@dataclass(frozen=True)
class Requests:
    """A request stream as the bounds see it (arrays of one length, sorted by time)."""

    time: np.ndarray  # float seconds (any unit: only differences and ratios matter)
    key: np.ndarray  # object id
    box: np.ndarray  # appliance index
    size: np.ndarray  # bytes
    measured: np.ndarray  # bool: counts towards the hit ratio

    def previous(self) -> np.ndarray:
        """Time of the same object's previous request on the same appliance, -inf if none."""
        n = len(self.time)
        comp = self.box.astype(np.int64) * (int(self.key.max(initial=0)) + 1) + self.key
        order = np.lexsort((np.arange(n), comp))
        prev = np.full(n, -np.inf)
        same = comp[order[1:]] == comp[order[:-1]]
        prev[order[1:][same]] = self.time[order[:-1][same]]
        return prev

    @property
    def requested(self) -> float:
        return float(self.size[self.measured].sum())


@dataclass(frozen=True)
class Windows:
    """Fill windows, sorted and disjoint: [start, end] and the bytes each appliance may
    fetch in each."""

    start: np.ndarray
    end: np.ndarray
    budget: np.ndarray

    @classmethod
    def none(cls) -> Windows:
        empty = np.zeros(0)
        return cls(empty, empty, empty)

    @classmethod
    def daily(cls, days: int, open_s: float, close_s: float, rate: float) -> Windows:
        """A window from `open_s` to `close_s` (seconds after midnight; may wrap past
        midnight) on each of `days` days, fetching at `rate` bytes per second."""
        day = 86400.0
        length = (close_s - open_s) % day or day
        start = np.arange(days) * day + open_s
        return cls(start, start + length, np.full(days, rate * length))


def _greedy(length: np.ndarray, size: np.ndarray, budget: float) -> np.ndarray:
    """Fractional knapsack, value = size, cost = size × length: the share of each item."""
    take = np.zeros(len(length))
    order = np.argsort(length, kind="stable")
    cost = size[order] * length[order]
    cum = np.cumsum(cost)
    full = cum <= budget * (1 + EPS)
    take[order[full]] = 1.0
    k = int(full.sum())
    if k < len(order):
        left = budget - (cum[k - 1] if k else 0.0)
        take[order[k]] = max(0.0, left / cost[k]) if cost[k] > 0 else 1.0
    return take


@dataclass(frozen=True)
class Bound:
    hit_bytes: float
    requested: float
    #: the fill budget of some window limited the prefetching bound (the LP was solved)
    fill_binding: bool = False

    @property
    def hit_ratio(self) -> float:
        return self.hit_bytes / self.requested if self.requested else 0.0


def demand_bound(req: Requests, capacity: float) -> Bound:
    """PFOO-L for byte hit ratio: no demand-filled cache of `capacity` bytes per appliance,
    online or offline, serves more bytes from cache."""
    return prefetch_bound(req, capacity, Windows.none())


def prefetch_bound(req: Requests, capacity: float, windows: Windows) -> Bound:
    """The same bound for a cache that may also prefetch inside `windows` within their
    budgets: fair to a policy with an off-peak fill."""
    prev = req.previous()
    total = 0.0
    binding = False
    for b in np.unique(req.box):
        on = (req.box == b) & req.measured & (req.size <= capacity)
        t, size, p = req.time[on], req.size[on].astype(float), prev[on]
        if len(windows.start):
            w = np.searchsorted(windows.start, t, side="right") - 1
            s = np.where(w >= 0, np.minimum(t, windows.end[np.maximum(w, 0)]), -np.inf)
            can_fill = s > p
        else:
            w = np.full(len(t), -1)
            s = np.full(len(t), -np.inf)
            can_fill = np.zeros(len(t), dtype=bool)
        demand_len = t - p  # inf without a previous request
        fill_len = np.where(can_fill, t - s, np.inf)
        use_fill = fill_len < demand_len
        length = np.minimum(demand_len, fill_len)
        ok = np.isfinite(length)
        if not ok.any():
            continue
        # Every candidate interval (either option) lies inside [first start, last request].
        first = min(float(np.min(p[np.isfinite(p)], initial=np.inf)),
                    float(np.min(s[can_fill], initial=np.inf)))
        span = float(t[ok].max() - first)
        budget = capacity * span
        take = np.zeros(len(t))
        take[ok] = _greedy(length[ok], size[ok], budget)
        fill_bytes = np.bincount(w[use_fill], weights=(take * size)[use_fill],
                                 minlength=len(windows.start))
        if np.all(fill_bytes <= windows.budget * (1 + EPS) + 1.0):
            total += float((take * size).sum())
            continue
        binding = True
        total += _lp(size, demand_len, fill_len, w, windows.budget, budget)
    return Bound(total, req.requested, binding)


def _lp(size: np.ndarray, demand_len: np.ndarray, fill_len: np.ndarray, window: np.ndarray,
        fill_budget: np.ndarray, budget: float) -> float:
    """The prefetching relaxation with its fill budgets, as an LP scaled to O(1): bytes in
    units of the largest object, the integral's budget to 1."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    d_idx = np.flatnonzero(np.isfinite(demand_len))
    f_idx = np.flatnonzero(np.isfinite(fill_len))
    nd, nf = len(d_idx), len(f_idx)
    unit = float(size.max())
    v = size / unit
    integral = np.concatenate([v[d_idx] * demand_len[d_idx], v[f_idx] * fill_len[f_idx]])
    integral /= max(EPS, budget / unit)
    wins, row = np.unique(window[f_idx], return_inverse=True)
    fill = coo_matrix((v[f_idx], (row, nd + np.arange(nf))), shape=(len(wins), nd + nf))
    both = np.intersect1d(d_idx, f_idx)
    k = np.arange(len(both))
    pairs = coo_matrix(
        (np.ones(2 * len(both)),
         (np.concatenate([k, k]),
          np.concatenate([np.searchsorted(d_idx, both), nd + np.searchsorted(f_idx, both)]))),
        shape=(len(both), nd + nf),
    )
    a = vstack([coo_matrix(integral.reshape(1, -1)), fill, pairs]).tocsr()
    b = np.concatenate([[1.0], fill_budget[wins] / unit, np.ones(len(both))])
    c = -np.concatenate([v[d_idx], v[f_idx]])
    res = linprog(c, A_ub=a, b_ub=b, bounds=(0.0, 1.0), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the prefetching bound's LP failed: {res.message}")
    return float(-res.fun * unit)


def from_trace(trace: object, measure_from: float) -> Requests:
    """The simulator's trace (`bench.cachesim.trace.Trace`) as a request stream."""
    sizes = trace.catalog.sizes  # type: ignore[attr-defined]
    return Requests(
        time=trace.time, key=trace.obj, box=trace.box,  # type: ignore[attr-defined]
        size=sizes[trace.obj], measured=trace.time >= measure_from,  # type: ignore[attr-defined]
    )


def _grid(x: np.ndarray, g0: float, step: float, npts: int) -> np.ndarray:
    """Index of the first grid moment at or after each of `x` (-inf: the first)."""
    return np.clip(np.ceil((np.nan_to_num(x, neginf=g0) - g0) / step), 0, npts).astype(np.int64)


def dual_bound(req: Requests, capacity: float, windows: Windows | None = None, *,
               step: float = 900.0, iterations: int = 200) -> Bound:
    """A tighter upper bound: the capacity must hold at *every* moment, in particular at a
    grid of moments `step` apart, not only on average. Relaxing those constraints, the
    integral and the fill budgets with multipliers (μ per grid moment, λ, ν per window)
    gives, by weak duality, an upper bound for *any* multipliers ≥ 0:

        Σ_requests size·max(0, 1 - π_demand, 1 - π_fill) + C·Σμ + λ·C·T + Σ ν·budget

    where an interval's price π is the μ of the grid moments it covers, plus λ·length,
    plus its window's ν if it is prefetched. We start from PFOO-L's multipliers (μ = 0,
    λ its cut-off) and improve them by projected subgradient steps, keeping the smallest
    value seen; every value is a valid bound, so it is never above PFOO-L's."""
    win = windows if windows is not None else Windows.none()
    prev = req.previous()
    total = 0.0
    for b in np.unique(req.box):
        on = (req.box == b) & req.measured & (req.size <= capacity)
        t, s, p = req.time[on], req.size[on] / capacity, prev[on]
        if len(win.start):
            w = np.searchsorted(win.start, t, side="right") - 1
            f_start = np.where(w >= 0, np.minimum(t, win.end[np.maximum(w, 0)]), -np.inf)
            can_fill = f_start > p
        else:
            w = np.full(len(t), -1)
            f_start = np.full(len(t), -np.inf)
            can_fill = np.zeros(len(t), dtype=bool)
        has_d = np.isfinite(p)
        keep = has_d | can_fill
        if not keep.any():
            continue
        t, s, p, w, f_start = t[keep], s[keep], p[keep], w[keep], f_start[keep]
        has_d, can_fill = has_d[keep], can_fill[keep]
        g0 = float(min(np.min(np.where(has_d, p, np.inf)),
                       np.min(np.where(can_fill, f_start, np.inf))))
        span = float(t.max() - g0) / step  # in grid steps
        npts = int(np.ceil(span)) + 1

        ib = _grid(t, g0, step, npts)
        ia_d = np.where(has_d, _grid(p, g0, step, npts), ib)
        ia_f = np.where(can_fill, _grid(f_start, g0, step, npts), ib)
        len_d = np.where(has_d, (t - p) / step, np.inf)
        len_f = np.where(can_fill, (t - f_start) / step, np.inf)
        wb = win.budget / capacity
        wi = np.maximum(w, 0)
        fin_d = np.where(has_d, len_d, 0.0)
        fin_f = np.where(can_fill, len_f, 0.0)
        # PFOO-L's multiplier: the reciprocal of the greedy's cut-off length.
        length = np.minimum(len_d, len_f)
        take = _greedy(length, s, span)
        cut = length[take > 0].max() if (take > 0).any() else 0.0
        lam = 1.0 / cut if take.sum() < len(take) and cut > 0 else 0.0
        mu = np.zeros(npts)
        nu = np.zeros(len(wb))
        best = np.inf
        for k in range(iterations):
            m = np.concatenate([[0.0], np.cumsum(mu)])
            gain_d = np.where(has_d, 1.0 - (m[ib] - m[ia_d]) - lam * fin_d, -np.inf)
            gain_f = np.where(can_fill, 1.0 - (m[ib] - m[ia_f]) - lam * fin_f
                              - (nu[wi] if len(nu) else 0.0), -np.inf)
            pick_f = (gain_f > gain_d) & (gain_f > 0)
            pick_d = ~pick_f & (gain_d > 0)
            value = (float((s * np.maximum(0.0, np.maximum(gain_d, gain_f))).sum())
                     + float(mu.sum()) + lam * span + float((nu * wb).sum()))
            best = min(best, value)
            if k == iterations - 1:
                break
            load = np.zeros(npts + 1)
            np.add.at(load, ia_d[pick_d], s[pick_d])
            np.add.at(load, ib[pick_d], -s[pick_d])
            np.add.at(load, ia_f[pick_f], s[pick_f])
            np.add.at(load, ib[pick_f], -s[pick_f])
            load = np.cumsum(load)[:npts]
            eta = 0.05 / np.sqrt(k + 1.0)
            mu = np.maximum(0.0, mu - eta * (1.0 - load))
            used = float((s * fin_d)[pick_d].sum() + (s * fin_f)[pick_f].sum())
            lam = max(0.0, lam - eta * (span - used) / max(1.0, span) * lam)
            if len(nu):
                fill = np.bincount(wi[pick_f], weights=s[pick_f], minlength=len(wb))
                nu = np.maximum(0.0, nu - eta * (wb - fill) / np.maximum(wb, 1.0))
        total += best * capacity
    return Bound(total, req.requested)
