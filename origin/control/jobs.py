"""The control plane's periodic jobs, run by one instance at a time.

Planning (every `plan_interval`: the next plan epoch for every site), decay (popularity
rows decayed to nothing are forgotten) and pruning (heartbeat history past its
retention) need no more than one runner, and two would only repeat work. Each instance
tries the store's lease every `lease_retry` seconds; the holder runs the jobs, the others
wait. When the holder dies its PostgreSQL session ends, the lock is released and another
instance takes over within about one `lease_retry`. Nothing here is state a request
depends on: a new holder starts from what the database says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from origin.control.http_common import BEATS, CATALOG, CLOCK, LIVENESS, SETTINGS, STORE
from origin.control.planning.shared import replan_all
from origin.control.store import Store
from origin.control.store_plans import Lease
from vcdn.errors import StoreError
from vcdn.logs import event

log = logging.getLogger("vcdn.control")
PRUNE_EVERY: Final = 60.0
SCORE_FLOOR: Final = 1e-3  # a title asked once, ten half-lives ago


@dataclass
class JobState:
    """What this instance knows of the jobs, for /healthz and /metrics."""

    leader: bool = False
    takeovers: int = 0
    plans: int = 0
    epoch: int | None = None
    last_plan: float | None = None
    errors: int = 0


JOBS = web.AppKey("control_jobs", JobState)


async def plan_once(app: web.Application) -> int | None:
    """One planning run: the new epoch, or None if another instance got there first."""
    from origin.control import health
    from origin.control.http_appliances import catalog_of

    store: Store = app[STORE]
    await app[BEATS].flush()
    now = app[CLOCK]()
    live = app[LIVENESS]
    views = [
        r.view(health.state(r.last_heartbeat, r.reported_state, now, live))
        for r in await store.list_appliances()
    ]
    titles, stamp = await catalog_of(store, app[CATALOG])
    return await replan_all(
        store, views, titles, stamp, now, app[SETTINGS].popularity_half_life
    )


async def run_jobs(app: web.Application, lease: Lease) -> None:
    """Until cancelled: hold the lease if possible and run what is due."""
    settings = app[SETTINGS]
    state = app[JOBS]
    last_prune = last_plan = time.monotonic()
    while True:
        held = await lease.hold()
        if held and not state.leader:
            state.takeovers += 1
            event(log, "jobs_lease_taken", store=app[STORE].kind)
        elif state.leader and not held:
            event(log, "jobs_lease_lost", logging.WARNING)
        state.leader = held
        if held:
            mono = time.monotonic()
            try:
                if settings.plan_interval > 0 and mono - last_plan >= settings.plan_interval:
                    last_plan = mono
                    epoch = await plan_once(app)
                    if epoch is not None:
                        state.plans += 1
                        state.epoch = epoch
                        state.last_plan = app[CLOCK]()
                        event(log, "fill_planned", epoch=epoch)
                if mono - last_prune >= PRUNE_EVERY:
                    last_prune = mono
                    await prune_once(app)
            except StoreError as exc:
                state.errors += 1
                event(log, "jobs_failed", logging.ERROR, detail=str(exc))
            except Exception:  # a bug in one run must not stop the jobs for good
                state.errors += 1
                log.exception("jobs_failed")
        await asyncio.sleep(settings.lease_retry)


async def prune_once(app: web.Application) -> None:
    """Heartbeat history past its retention, and popularity decayed to nothing."""
    store = app[STORE]
    settings = app[SETTINGS]
    now = app[CLOCK]()
    removed = await store.prune_heartbeats(now - settings.heartbeat_retention)
    if removed:
        event(log, "heartbeats_pruned", removed=removed)
    forgotten = await store.prune_scores(now, settings.popularity_half_life, SCORE_FLOOR)
    if forgotten:
        event(log, "scores_forgotten", removed=forgotten)
