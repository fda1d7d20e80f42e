"""The exact offline optimum of a demand-filled cache, for small traces, as an ILP.

A hit is an interval (previous request of the object on the appliance → this request)
during which the object stays cached; a schedule is a set of intervals whose sizes fit in
the capacity after every request. Choosing intervals with binary variables, each worth
its size, under one capacity row per request after which an interval starts (the load
only grows there), is exactly the byte-hit-ratio optimum of a cache that may bypass and
evict at will (FOO's integer program, Berger et al., SIGMETRICS 2018). It is NP-hard in
general; HiGHS (`scipy.optimize.milp`) solves a few thousand requests per appliance.

`replay_keys` drives any policy of the store's contract over a plain key sequence (one
cache), so the heuristics can be set against the optimum on the same small input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.cachesim.belady import NEVER
from bench.cachesim.bounds import Bound, Requests


def exact_optimum(req: Requests, capacity: float, time_limit: float = 60.0) -> Bound:
    """The demand-filled optimum's byte hits, per appliance summed (raises if HiGHS does
    not prove optimality within `time_limit` seconds per appliance)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    total = 0.0
    for b in np.unique(req.box):
        idx = np.flatnonzero(req.box == b)
        keys = req.key[idx]
        last: dict[int, int] = {}
        starts, ends, sizes = [], [], []
        for r, k in enumerate(keys.tolist()):
            p = last.get(k)
            last[k] = r
            size = float(req.size[idx[r]])
            if p is None or not req.measured[idx[r]] or size > capacity:
                continue
            starts.append(p)
            ends.append(r)
            sizes.append(size)
        if not starts:
            continue
        rows = np.unique(starts)
        lo = np.searchsorted(rows, starts)
        hi = np.searchsorted(rows, np.array(ends) - 1, side="right")
        count = hi - lo
        col = np.repeat(np.arange(len(starts)), count)
        row = np.concatenate([np.arange(a, z) for a, z in zip(lo, hi, strict=True)])
        unit = max(sizes)
        v = np.array(sizes) / unit
        a = coo_matrix((v[col], (row, col)), shape=(len(rows), len(starts))).tocsr()
        res = milp(
            -v, constraints=LinearConstraint(a, -np.inf, capacity / unit),
            integrality=np.ones(len(starts)), bounds=Bounds(0, 1),
            options={"time_limit": time_limit},
        )
        if res.status != 0:
            raise RuntimeError(f"the exact optimum was not proven: {res.message}")
        total += float(np.round(-res.fun * unit))
    return Bound(total, req.requested)


def replay_keys(policy: object, keys: Sequence[int], sizes: Sequence[int], capacity: int,
                measured: Sequence[bool] | None = None) -> int:
    """Byte hits of `policy` (store contract; an offline one gets `see`/`admits`) on one
    cache of `capacity` bytes; `sizes[i]` is the size of request i's object."""
    nxt = [NEVER] * len(keys)
    seen: dict[int, int] = {}
    for i in range(len(keys) - 1, -1, -1):
        nxt[i] = seen.get(keys[i], NEVER)
        seen[keys[i]] = i
    offline = hasattr(policy, "admits")
    cache: dict[int, int] = {}
    used = hits = 0
    for i, (key, size) in enumerate(zip(keys, sizes, strict=True)):
        if offline:
            policy.see(nxt[i], i)  # type: ignore[attr-defined]
        if key in cache:
            policy.on_access(key)  # type: ignore[attr-defined]
            if measured is None or measured[i]:
                hits += size
            continue
        if size > capacity or (offline and not policy.admits(size, capacity - used)):  # type: ignore[attr-defined]
            continue
        need = used + size - capacity
        if need > 0:
            for victim in policy.victims(need):  # type: ignore[attr-defined]
                used -= cache.pop(victim)
                policy.on_remove(victim)  # type: ignore[attr-defined]
                if used + size <= capacity:
                    break
        if used + size > capacity:
            continue
        policy.on_insert(key, size, False)  # type: ignore[attr-defined]
        cache[key] = size
        used += size
    return hits
