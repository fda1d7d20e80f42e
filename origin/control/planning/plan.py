"""The nightly fill plan, pure: popularity + catalog + appliances (+ last plan) → manifests.

    plan_fill(popularity, catalog, appliances, previous, now=...) -> {appliance id: FillManifest}

1. `predict` turns decayed request counts and release dates into tomorrow's demand per
   site and title.
2. For each site, `place_site` chooses copies per title on the site's healthy appliances,
   by the same rendezvous ranking steering uses, within each appliance's capacity less a
   headroom for misses, preferring what the previous plan already holds.
3. Each appliance's manifest lists its titles most popular first (the fill order), each
   with its files and the peers to fill it from: the site's other holders of the title
   first (rank order), then the site's other healthy appliances (rank order).

An appliance that is not healthy (stale, draining, down) keeps its previous manifest, so a
missed heartbeat does not make it drop or fetch anything, and its copies are not counted
on: the healthy appliances get the site's demand between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from origin.control.planning.placement import (
    Box,
    PlacementRules,
    bytes_moved,
    place_site,
    ranking,
)
from origin.control.planning.predict import GLOBAL_WEIGHT, Popularity, ReleaseBoost, predict
from vcdn.schemas import ApplianceView, FillManifest, FillTitle, TitleManifest

MEMORY: Final = 86400.0  # half-life of what the previous plan predicted, seconds


@dataclass(frozen=True, slots=True)
class PlanSettings:
    rules: PlacementRules = field(default_factory=PlacementRules)
    boost: ReleaseBoost = field(default_factory=ReleaseBoost)
    global_weight: float = GLOBAL_WEIGHT
    #: 0 turns the smoothing off: each plan then sees only today's scores.
    memory: float = MEMORY


def smooth(
    demand: dict[str, float],
    previous: Sequence[FillManifest],
    now: float,
    memory: float,
) -> dict[str, float]:
    """Blend today's prediction with what the previous plan predicted for the titles it
    placed: ``a·today + (1-a)·before`` with ``a = 1 - 2^(-elapsed/memory)``.

    The control store's scores decay fast (hours) so that a premiere or a sudden hit is
    seen at once; a title at the cache's margin, asked for a few times a day, then looks
    different every night, and planning on that noise moves bytes for nothing. The
    previous manifests carry their scores, so the plan itself is the longer memory: an
    exponential average in continuous time, whatever the interval between plans (a rerun
    at once changes nothing). Titles the previous plan did not place have no memory and
    are taken as predicted; premieres are boosted either way.
    """
    if memory <= 0:
        return demand
    before: dict[str, tuple[float, float]] = {}
    for m in previous:
        for t in m.titles:
            if t.score > before.get(t.title, (0.0, 0.0))[0]:
                before[t.title] = (t.score, m.generated_at)
    out = dict(demand)
    for title, (score, at) in before.items():
        today = demand.get(title)
        if today is None:
            continue  # no longer wanted at all (e.g. removed from the catalog)
        a = 1.0 - 2.0 ** (-max(0.0, now - at) / memory)
        out[title] = a * today + (1.0 - a) * score
    return out


def held_titles(manifests: Mapping[str, FillManifest] | None) -> dict[str, set[str]]:
    """{appliance id: titles its manifest lists}."""
    return {a: {t.title for t in m.titles} for a, m in (manifests or {}).items()}


def plan_fill(
    popularity: Popularity,
    catalog: Sequence[TitleManifest],
    appliances: Sequence[ApplianceView],
    previous: Mapping[str, FillManifest] | None = None,
    *,
    now: float,
    settings: PlanSettings = PlanSettings(),
    global_table: Mapping[str, float] | None = None,
) -> dict[str, FillManifest]:
    """Fill manifests for every appliance, by id.

    `popularity` needs the sites of `appliances`; `global_table` ({title: score summed
    over all sites}) defaults to the sum of `popularity`.
    """
    # A running live event is pulled through on demand: its files change every segment,
    # so there is nothing to fill ahead of time. It is planned once it ends (live=False).
    catalog = [m for m in catalog if not m.live]
    by_title = {m.title: m for m in catalog}
    sizes = {m.title: m.total_bytes for m in catalog}
    sites = sorted({a.site for a in appliances})
    demand = predict(
        popularity,
        catalog,
        sites,
        now,
        boost=settings.boost,
        global_weight=settings.global_weight,
        global_table=global_table,
    )
    prev_held = held_titles(previous)
    out: dict[str, FillManifest] = {}
    for site in sites:
        members = [a for a in appliances if a.site == site]
        healthy = [a for a in members if a.state == "healthy"]
        before = [m for a in members if (m := (previous or {}).get(a.id)) is not None]
        demand[site] = smooth(demand[site], before, now, settings.memory)
        site_plan = place_site(
            demand[site],
            sizes,
            [Box(a.id, a.capacity_bytes) for a in healthy],
            prev_held,
            settings.rules,
        )
        urls = {a.id: a.public_url for a in healthy}
        key = tuple(urls)  # the healthy ids in order, as place_site ranked them
        ranked_urls: dict[str, list[str]] = {}
        for a in members:
            if a.state != "healthy":
                old = (previous or {}).get(a.id)
                out[a.id] = (
                    old
                    if old is not None
                    else FillManifest(
                        appliance=a.id, generated_at=now, capacity_bytes=a.capacity_bytes, titles=[]
                    )
                )
                continue
            titles = sorted(site_plan.held[a.id], key=lambda t: (-demand[site][t], t))
            fill_titles = []
            for t in titles:
                # Peers: the other holders, then the rest of the site, in ranking order.
                # The holders are a prefix of the title's ranking, and a subset of a
                # rendezvous ranking keeps its order: that is the ranking without this
                # appliance, sliced once per title (ranking each appliance's "others"
                # apart hashed the whole site again for every appliance and title).
                order = ranking(t, key)
                peers = ranked_urls.get(t)
                if peers is None:
                    peers = ranked_urls[t] = [urls[h] for h in order]
                mine = order.index(a.id)
                fill_titles.append(
                    FillTitle(
                        title=t,
                        score=demand[site][t],
                        bytes=sizes[t],
                        files=list(by_title[t].files),
                        peers=peers[:mine] + peers[mine + 1 :],
                    )
                )
            out[a.id] = FillManifest(
                appliance=a.id,
                generated_at=now,
                capacity_bytes=a.capacity_bytes,
                titles=fill_titles,
            )
    return out


def moved(
    previous: Mapping[str, FillManifest] | None,
    new: Mapping[str, FillManifest],
    catalog: Sequence[TitleManifest],
) -> int:
    """Bytes the appliances would fetch to go from `previous` to `new`."""
    sizes = {m.title: m.total_bytes for m in catalog}
    return bytes_moved(held_titles(previous), held_titles(new), sizes)


def manifest_for(
    appliance: str,
    popularity: Popularity,
    catalog: Sequence[TitleManifest],
    appliances: Sequence[ApplianceView],
    memory: dict[str, FillManifest],
    *,
    now: float,
    settings: PlanSettings = PlanSettings(),
    global_table: Mapping[str, float] | None = None,
) -> FillManifest:
    """One appliance's manifest, planned with its site and remembered in `memory`.

    `memory` is {appliance id: the manifest it was last given}: the previous plan, which
    keeps plans stable from one fetch to the next. Only the appliance's own site is
    planned (the others do not change its manifest). The asking appliance is planned as
    healthy when the control plane sees it as down or stale: it is asking, so it is up,
    and its first heartbeat may simply not have landed yet (a draining one is not).
    Raises StopIteration for an unknown id.
    """
    me = next(a for a in appliances if a.id == appliance)
    if me.state in ("down", "stale"):
        me = replace(me, state="healthy")
    site = [me if a.id == appliance else a for a in appliances if a.site == me.site]
    plans = plan_fill(
        popularity, catalog, site, memory, now=now, settings=settings, global_table=global_table
    )
    memory[appliance] = plans[appliance]
    return plans[appliance]
