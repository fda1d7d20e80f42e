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

import asyncio
import contextlib
import gc
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace

import orjson

from origin.control import popularity
from origin.control.planning.plan import PlanSettings, manifest_for, plan_fill
from origin.control.store import Store
from origin.control.store_plans import StoredPlan
from vcdn.schemas import ApplianceView, FileEntry, FillManifest, FillTitle, TitleManifest, encode


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
    """Compact JSON of a manifest. orjson writes the dataclasses itself: a planning run
    writes every appliance's manifest, each listing a site's peers for every title
    (10,000 appliances: seconds through `encode` and `json.dumps`). Strings that are not
    valid Unicode cannot occur (ids and paths are checked on the way in), but would
    take the standard encoder rather than fail."""
    try:
        return orjson.dumps(manifest).decode()
    except orjson.JSONEncodeError:
        return json.dumps(encode(manifest), separators=(",", ":"))


def manifest_from_trusted(text: str) -> FillManifest:
    """A manifest this control plane wrote (`manifest_json`), rebuilt without checking
    every field again: the generic strict decoder took ~1 ms a manifest, most of a
    planning run over a large fleet. Strict `decode` remains for what clients send."""
    d = orjson.loads(text)
    titles = [
        FillTitle(
            title=t["title"],
            score=float(t["score"]),
            bytes=t["bytes"],
            files=[FileEntry(f["path"], f["size"], f["sha256"]) for f in t["files"]],
            peers=t.get("peers", []),
        )
        for t in d["titles"]
    ]
    return FillManifest(
        appliance=d["appliance"],
        generated_at=float(d["generated_at"]),
        capacity_bytes=d["capacity_bytes"],
        titles=titles,
        version=d.get("version", 1),
    )


def memory_of(stored: dict[str, StoredPlan]) -> dict[str, FillManifest]:
    return {a: manifest_from_trusted(p.manifest) for a, p in stored.items()}


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
    """The fill manifest of `appliance` (in `everyone`, which needs to hold no more than
    its site: the plan depends on nothing else of the fleet) as JSON text."""
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
    stored manifest and replan on their next request.

    The planning itself runs in a worker thread: for 10,000 appliances it is seconds of
    Python, and on the event loop it held back every heartbeat of this replica for as
    long (the interpreter hands the loop back every switch interval from a thread)."""
    epoch = await store.plan_epoch()
    demand = await store.popularity_stamp()
    stored = await store.fill_plans([a.id for a in everyone])
    scores = await store.scores()
    totals = await store.title_totals(now, half_life)
    rows = await asyncio.to_thread(
        plan_rows, everyone, catalog, stored, scores, totals, stamp, demand, epoch + 1,
        now, half_life, settings,
    )
    return epoch + 1 if await store.advance_plans(epoch, rows, now) else None


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def plan_rows(
    everyone: Sequence[ApplianceView],
    catalog: Sequence[TitleManifest],
    stored: dict[str, StoredPlan],
    scores: Sequence[popularity.Score],
    totals: dict[str, float],
    stamp: str,
    demand: float,
    epoch: int,
    now: float,
    half_life: float,
    settings: PlanSettings,
) -> list[StoredPlan]:
    """The stored plans of epoch `epoch` for the healthy appliances, pure.

    Without the cyclic garbage collector while it runs: a run over 10,000 appliances
    allocates millions of short-lived containers (a site's peers for every title of every
    appliance), which start full collections that each walk the whole heap holding the
    interpreter lock (hundreds of ms the event loop cannot run, ~40 % of the run's CPU).
    They hold no cycles and go by reference counting when the run ends."""
    with _no_cyclic_gc():
        table = popularity.by_site(popularity.current(scores, now, half_life))
        plans = plan_fill(
            table, catalog, everyone, memory_of(stored), now=now, settings=settings,
            global_table=totals,
        )
        by_site: dict[str, list[ApplianceView]] = {}
        for a in everyone:
            by_site.setdefault(a.site, []).append(a)
        digests = {site: inputs_digest(stamp, demand, members) for site, members in by_site.items()}
        return [
            StoredPlan(a.id, epoch, digests[a.site], now, manifest_json(plans[a.id]))
            for a in everyone
            if a.state == "healthy"
        ]
