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

With prefetching a request has more candidate intervals: from its previous request (free
of fill bandwidth), or from the latest open moment of any fill window that is open after
that request and opens before this one (paid from that window's budget). Windows need
not have equal budgets, so the latest window is not always the one a cache can use: when
its budget is spent, an earlier one with budget left may still fetch the object. Without
the bandwidth constraints the greedy takes each request's shortest candidate (the latest
window's, if any); if that respects every window's budget it is the optimum of the whole
relaxation, otherwise the LP (every candidate, their sum ≤ 1 per request, the integral
and one budget per window) is solved with HiGHS (`scipy.optimize.linprog`).

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


def fill_candidates(time: np.ndarray, prev: np.ndarray, windows: Windows
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every interval a prefetch can start for each request: (request index, window, start),
    grouped by request, latest window first.

    A cache may fetch the object in any window open after its previous request and opening
    at or before the request, not only the last one: budgets differ, and the last window's
    may be spent. Within a window the latest open moment (its end, or the request itself)
    gives the shortest interval for the same bytes, so it is the only one of that window
    worth considering. A daily window gives at most one candidate per day."""
    if not len(windows.start):
        none = np.zeros(0, dtype=np.int64)
        return none, none, np.zeros(0)
    hi = np.searchsorted(windows.start, time, side="right") - 1
    lo = np.searchsorted(windows.end, prev, side="right")
    count = np.maximum(hi - lo + 1, 0)
    r = np.repeat(np.arange(len(time)), count)
    first = np.cumsum(count) - count
    w = hi[r] - (np.arange(len(r)) - first[r])
    start = np.minimum(time[r], windows.end[w])
    ok = start > prev[r]  # none if the request repeats its previous one's moment
    return r[ok], w[ok], start[ok]


def _latest(r: np.ndarray, n: int) -> np.ndarray:
    """Position in `fill_candidates`' arrays of each request's latest window, -1 if none."""
    at = np.full(n, -1)
    lead = np.ones(len(r), dtype=bool)
    lead[1:] = r[1:] != r[:-1]
    at[r[lead]] = np.flatnonzero(lead)
    return at


def prefetch_bound(req: Requests, capacity: float, windows: Windows) -> Bound:
    """The same bound for a cache that may also prefetch inside `windows` within their
    budgets: fair to a policy with an off-peak fill."""
    prev = req.previous()
    total = 0.0
    binding = False
    for b in np.unique(req.box):
        on = (req.box == b) & req.measured & (req.size <= capacity)
        t, size, p = req.time[on], req.size[on].astype(float), prev[on]
        r, w, start = fill_candidates(t, p, windows)
        at = _latest(r, len(t))
        can_fill = at >= 0
        demand_len = t - p  # inf without a previous request
        fill_len = np.full(len(t), np.inf)
        fill_len[can_fill] = t[can_fill] - start[at[can_fill]]
        use_fill = fill_len < demand_len
        length = np.minimum(demand_len, fill_len)
        ok = np.isfinite(length)
        if not ok.any():
            continue
        # Every candidate interval lies inside [first start, last request].
        first = min(float(np.min(p[np.isfinite(p)], initial=np.inf)),
                    float(np.min(start, initial=np.inf)))
        span = float(t[ok].max() - first)
        budget = capacity * span
        take = np.zeros(len(t))
        take[ok] = _greedy(length[ok], size[ok], budget)
        fill_bytes = np.bincount(w[at[use_fill]], weights=(take * size)[use_fill],
                                 minlength=len(windows.start))
        if np.all(fill_bytes <= windows.budget * (1 + EPS) + 1.0):
            total += float((take * size).sum())
            continue
        binding = True
        total += _lp(size, demand_len, r, w, t[r] - start, windows.budget, budget)
    return Bound(total, req.requested, binding)


def _lp(size: np.ndarray, demand_len: np.ndarray, fill_req: np.ndarray, fill_win: np.ndarray,
        fill_len: np.ndarray, fill_budget: np.ndarray, budget: float) -> float:
    """The prefetching relaxation with its fill budgets, as an LP scaled to O(1): bytes in
    units of the largest object, the integral's budget to 1. One variable per candidate
    interval (the demand one, and one per window a prefetch could use)."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    d_idx = np.flatnonzero(np.isfinite(demand_len))
    nd, nf = len(d_idx), len(fill_req)
    owner = np.concatenate([d_idx, fill_req])
    unit = float(size.max())
    v = size / unit
    integral = np.concatenate([v[d_idx] * demand_len[d_idx], v[fill_req] * fill_len])
    integral /= max(EPS, budget / unit)
    wins, row = np.unique(fill_win, return_inverse=True)
    fill = coo_matrix((v[fill_req], (row, nd + np.arange(nf))), shape=(len(wins), nd + nf))
    # At most one interval (or shares summing to one) ends at each request.
    several = np.bincount(owner, minlength=len(size)) > 1
    rows = np.cumsum(several) - 1
    col = np.flatnonzero(several[owner])
    once = coo_matrix((np.ones(len(col)), (rows[owner[col]], col)),
                      shape=(int(several.sum()), nd + nf))
    a = vstack([coo_matrix(integral.reshape(1, -1)), fill, once]).tocsr()
    b = np.concatenate([[1.0], fill_budget[wins] / unit, np.ones(once.shape[0])])
    c = -v[owner]
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

        Σ_requests size·max(0, 1 - π_demand, max_w 1 - π_fill,w) + C·Σμ + λ·C·T + Σ ν·budget

    where an interval's price π is the μ of the grid moments it covers, plus λ·length,
    plus its window's ν if it is prefetched (in any window w since the previous request,
    as in `fill_candidates`). We start from PFOO-L's multipliers (μ = 0,
    λ its cut-off) and improve them by projected subgradient steps, keeping the smallest
    value seen; every value is a valid bound, so it is never above PFOO-L's."""
    win = windows if windows is not None else Windows.none()
    prev = req.previous()
    total = 0.0
    for b in np.unique(req.box):
        on = (req.box == b) & req.measured & (req.size <= capacity)
        t, s, p = req.time[on], req.size[on] / capacity, prev[on]
        r, wc, start = fill_candidates(t, p, win)
        has_d = np.isfinite(p)
        can_fill = _latest(r, len(t)) >= 0
        keep = has_d | can_fill
        if not keep.any():
            continue
        r = (np.cumsum(keep) - 1)[r]  # every request with a candidate is kept
        t, s, p, has_d, can_fill = t[keep], s[keep], p[keep], has_d[keep], can_fill[keep]
        g0 = float(min(np.min(np.where(has_d, p, np.inf)), np.min(start, initial=np.inf)))
        span = float(t.max() - g0) / step  # in grid steps
        npts = int(np.ceil(span)) + 1

        n = len(t)
        ar = np.arange(n)
        ib = _grid(t, g0, step, npts)
        ia_d = np.where(has_d, _grid(p, g0, step, npts), ib)
        len_d = np.where(has_d, (t - p) / step, np.inf)
        fin_d = np.where(has_d, len_d, 0.0)
        # The fill candidates, a row per request and a column per window it may use
        # (latest first; padding: no window, an empty interval at the request).
        at = _latest(r, n)
        col = np.arange(len(r)) - at[r]
        width = int(col.max()) + 1 if len(r) else 0
        ia_c = np.repeat(ib[:, None], width, axis=1)
        len_c = np.zeros((n, width))
        w_c = np.zeros((n, width), dtype=np.int64)
        pad = np.ones((n, width), dtype=bool)
        ia_c[r, col] = _grid(start, g0, step, npts)
        len_c[r, col] = (t[r] - start) / step
        w_c[r, col] = wc
        pad[r, col] = False
        wb = win.budget / capacity
        # PFOO-L's multiplier: the reciprocal of the greedy's cut-off length.
        length = np.minimum(len_d, np.where(can_fill, len_c[:, 0] if width else 0.0, np.inf))
        take = _greedy(length, s, span)
        cut = length[take > 0].max() if (take > 0).any() else 0.0
        lam = 1.0 / cut if take.sum() < len(take) and cut > 0 else 0.0
        mu = np.zeros(npts)
        nu = np.zeros(len(wb))
        best = np.inf
        for k in range(iterations):
            m = np.concatenate([[0.0], np.cumsum(mu)])
            gain_d = np.where(has_d, 1.0 - (m[ib] - m[ia_d]) - lam * fin_d, -np.inf)
            if width:
                # The best window per request. Without fill prices (ν = 0) it is the
                # latest: its interval lies inside every earlier one's, so costs no more.
                j = ar * 0
                if nu.any():
                    gain_c = 1.0 - (m[ib][:, None] - m[ia_c]) - lam * len_c - nu[w_c]
                    gain_c[pad] = -np.inf
                    j = np.argmax(gain_c, axis=1)
                ia_f, fin_f, wi = ia_c[ar, j], len_c[ar, j], w_c[ar, j]
                gain_f = np.where(pad[ar, j], -np.inf,
                                  1.0 - (m[ib] - m[ia_f]) - lam * fin_f - nu[wi])
            else:
                gain_f, ia_f, fin_f, wi = np.full(n, -np.inf), ib, np.zeros(n), ar * 0
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
