"""Fill plans kept in the database, so that any control replica gives the same answer.

`manifest_text` serves an appliance's fill-manifest request: the stored manifest if it
belongs to the current epoch and was made from the same inputs (the catalog's content,
the latest popularity update, and the id, state, capacity and URL of every appliance of
the site), else a plan made now from the stored manifests of the site (stickiness and
smoothing memory) and offered to the store, which keeps the first offer of an epoch and
inputs: a manifest is a function of the database, not of the replica asked. New demand
is planned for at the next request, as on one server. `replan_all` is the planning job:
every site planned from the stored plans, written as the next epoch at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

from origin.control import popularity
from origin.control.planning.plan import PlanSettings, manifest_for, plan_fill
from origin.control.store import Store
from origin.control.store_plans import StoredPlan
from vcdn.schemas import ApplianceView, FillManifest, TitleManifest, decode, encode


def as_asked(me: ApplianceView) -> ApplianceView:
    """The asking appliance is up (it asks): planned as healthy unless it drains."""
    return replace(me, state="healthy") if me.state in ("down", "stale") else me


def catalog_digest(catalog: Sequence[TitleManifest]) -> str:
    """Of what planning reads of each title (a replacement at the same instant counts)."""
    items = sorted(
        (m.title, m.version, m.total_bytes, len(m.files), m.release_at or "") for m in catalog
    )
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def inputs_digest(stamp: str, demand: float, site: Sequence[ApplianceView]) -> str:
    """What a site's plan depends on: `stamp` is the catalog's digest, `demand` the
    latest popularity update (read before the scores, so a beat landing meanwhile only
    makes the next request plan again)."""
    members = sorted((a.id, a.state, a.capacity_bytes, a.public_url) for a in site)
    text = json.dumps([stamp, repr(demand), members], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_json(manifest: FillManifest) -> str:
    return json.dumps(encode(manifest), separators=(",", ":"))


def memory_of(stored: dict[str, StoredPlan]) -> dict[str, FillManifest]:
    return {a: decode(FillManifest, json.loads(p.manifest)) for a, p in stored.items()}


async def manifest_text(
    store: Store,
    appliance: str,
    everyone: Sequence[ApplianceView],
    catalog: Sequence[TitleManifest],
    stamp: str,
    now: float,
    half_life: float,
    settings: PlanSettings = PlanSettings(),
) -> str:
    """The fill manifest of `appliance` (in `everyone`) as JSON text."""
    me = as_asked(next(a for a in everyone if a.id == appliance))
    site = [me if a.id == appliance else a for a in everyone if a.site == me.site]
    digest = inputs_digest(stamp, await store.popularity_stamp(), site)
    epoch = await store.plan_epoch()
    stored = await store.fill_plans([a.id for a in site])
    mine = stored.get(appliance)
    if mine is not None and mine.epoch == epoch and mine.inputs == digest:
        return mine.manifest
    own = popularity.by_site(popularity.current(await store.scores(me.site), now, half_life))
    totals = await store.title_totals(now, half_life)
    manifest = manifest_for(
        appliance, own, catalog, everyone, memory_of(stored), now=now, settings=settings,
        global_table=totals,
    )
    offer = StoredPlan(appliance, epoch, digest, now, manifest_json(manifest))
    return (await store.offer_plan(offer)).manifest


async def replan_all(
    store: Store,
    everyone: Sequence[ApplianceView],
    catalog: Sequence[TitleManifest],
    stamp: str,
    now: float,
    half_life: float,
    settings: PlanSettings = PlanSettings(),
) -> int | None:
    """Plan every site as the next epoch; the new epoch, or None if another instance
    advanced it meanwhile (its plan stands). Appliances that are not healthy keep their
    stored manifest and replan on their next request."""
    epoch = await store.plan_epoch()
    demand = await store.popularity_stamp()
    stored = await store.fill_plans([a.id for a in everyone])
    table = popularity.by_site(popularity.current(await store.scores(), now, half_life))
    totals = await store.title_totals(now, half_life)
    plans = plan_fill(
        table, catalog, everyone, memory_of(stored), now=now, settings=settings,
        global_table=totals,
    )
    by_site: dict[str, list[ApplianceView]] = {}
    for a in everyone:
        by_site.setdefault(a.site, []).append(a)
    digests = {site: inputs_digest(stamp, demand, members) for site, members in by_site.items()}
    rows = [
        StoredPlan(a.id, epoch + 1, digests[a.site], now, manifest_json(plans[a.id]))
        for a in everyone
        if a.state == "healthy"
    ]
    return epoch + 1 if await store.advance_plans(epoch, rows, now) else None
