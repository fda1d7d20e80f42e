"""Fill planning v1, pure: which titles each appliance should hold.

A function of (popularity, catalog, appliances) and nothing else, so that a smarter
placement can replace it and a simulator can call it without a database:

1. A title's predicted demand at a site is the site's decayed score plus a small share of
   the global score (`GLOBAL_WEIGHT`), so a new site still gets the titles popular
   elsewhere, and a site's own history dominates once it has some.
2. Titles with no predicted demand are left out; the rest are packed into the appliance's
   capacity greedily by demand per byte (the classic fractional-knapsack order, which is
   what maximises expected hits per byte of disk), keeping `HEADROOM` free for misses.
3. The chosen titles are listed most popular first (the fill order), each with its files
   and the healthy peers of the same site, ranked by rendezvous hashing so that the peer
   most likely to hold the title (the one steering sends its requests to) comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from origin.control.popularity import global_scores
from vcdn.hashing import rank
from vcdn.schemas import ApplianceView, FillManifest, FillTitle, TitleManifest

GLOBAL_WEIGHT: Final = 0.1
HEADROOM: Final = 0.1  # share of capacity left to ordinary cache misses

Popularity = Mapping[str, Mapping[str, float]]  # {site: {title: score}}


def demand(
    site: str, popularity: Popularity, global_table: Mapping[str, float]
) -> dict[str, float]:
    """{title: predicted demand at `site`}."""
    own = popularity.get(site, {})
    titles = set(own) | set(global_table)
    return {t: own.get(t, 0.0) + GLOBAL_WEIGHT * global_table.get(t, 0.0) for t in titles}


def plan_one(
    appliance: ApplianceView,
    popularity: Popularity,
    catalog: Sequence[TitleManifest],
    appliances: Sequence[ApplianceView],
    now: float,
    *,
    global_table: Mapping[str, float] | None = None,
) -> FillManifest:
    """The fill manifest of one appliance."""
    table = global_scores(popularity) if global_table is None else global_table
    wanted = demand(appliance.site, popularity, table)
    budget = int(appliance.capacity_bytes * (1.0 - HEADROOM))
    candidates = [m for m in catalog if wanted.get(m.title, 0.0) > 0.0]
    # Demand per byte, best first; an empty title costs nothing and sorts first.
    candidates.sort(key=lambda m: (-wanted[m.title] / max(1, m.total_bytes), m.title))
    chosen: list[TitleManifest] = []
    used = 0
    for manifest in candidates:
        size = manifest.total_bytes
        if used + size <= budget:
            chosen.append(manifest)
            used += size
    chosen.sort(key=lambda m: (-wanted[m.title], m.title))
    peers = {
        a.id: a.public_url
        for a in appliances
        if a.site == appliance.site and a.id != appliance.id and a.state == "healthy"
    }
    titles = [
        FillTitle(
            title=m.title,
            score=wanted[m.title],
            bytes=m.total_bytes,
            files=list(m.files),
            peers=[peers[p] for p in rank(m.title, peers)],
        )
        for m in chosen
    ]
    return FillManifest(
        appliance=appliance.id,
        generated_at=now,
        capacity_bytes=appliance.capacity_bytes,
        titles=titles,
    )


def plan(
    popularity: Popularity,
    catalog: Sequence[TitleManifest],
    appliances: Sequence[ApplianceView],
    now: float,
) -> dict[str, FillManifest]:
    """Fill manifests for every appliance, by id."""
    table = global_scores(popularity)
    return {
        a.id: plan_one(a, popularity, catalog, appliances, now, global_table=table)
        for a in appliances
    }
