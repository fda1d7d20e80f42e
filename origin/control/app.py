"""The control-plane aiohttp application: wiring only.

`make_app(settings)` opens the store in a cleanup context (so tests and the CLI share one
lifecycle), mounts the route table (`origin.control.api`: handlers and OpenAPI document), and runs
the heartbeat-history pruner in the background.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final

from aiohttp import web
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from origin.control import api, http_keys
from origin.control.auth import parse_bootstrap
from origin.control.beats import HeartbeatBuffer
from origin.control.health import Liveness
from origin.control.http_common import (
    BEATS,
    BOOTSTRAP,
    CATALOG,
    CLOCK,
    LIVENESS,
    SETTINGS,
    STORE,
    TOKENS,
    CatalogCache,
    Clock,
    TokenCache,
    errors_middleware,
    log,
)
from origin.control.http_meta import DOCUMENT
from origin.control.jobs import JOBS, JobState, run_jobs
from origin.control.routetable import mount
from origin.control.settings import ControlSettings
from origin.control.store import Store, open_store
from vcdn.aiotasks import cancel_all
from vcdn.logs import event
from vcdn.metrics import REGISTRY_KEY, new_registry

LATENCY_BUCKETS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)

REQUESTS = web.AppKey("control_requests_total", Counter)
LATENCY = web.AppKey("control_request_seconds", Histogram)


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    start = time.perf_counter()
    response = await handler(request)
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    request.app[REQUESTS].labels(request.method, name, str(response.status)).inc()
    request.app[LATENCY].labels(request.method, name).observe(time.perf_counter() - start)
    return response


class BeatStats:
    """Heartbeat counters read from the buffer at scrape time (nothing on the hot path)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        beats = self._app.get(BEATS)
        stored = CounterMetricFamily(
            "vcdn_control_heartbeats_stored", "Heartbeats written to the store."
        )
        dropped = CounterMetricFamily(
            "vcdn_control_heartbeats_dropped", "Heartbeats lost because the store failed."
        )
        stored.add_metric([], beats.stored if beats else 0)
        dropped.add_metric([], beats.dropped if beats else 0)
        yield stored
        yield dropped
        jobs = self._app[JOBS]
        leader = GaugeMetricFamily(
            "vcdn_control_jobs_leader", "1 while this instance runs the periodic jobs."
        )
        leader.add_metric([], float(jobs.leader))
        yield leader
        plans = CounterMetricFamily(
            "vcdn_control_plans", "Plan epochs this instance made (planning job)."
        )
        plans.add_metric([], jobs.plans)
        yield plans


def make_app(
    settings: ControlSettings, *, store: Store | None = None, clock: Clock = time.time
) -> web.Application:
    """The control API. Pass `store` to share an open store (it is then not closed here)."""
    app = web.Application(middlewares=[metrics_middleware, errors_middleware])
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[BOOTSTRAP] = parse_bootstrap(settings.tokens)
    app[TOKENS] = TokenCache()
    app[LIVENESS] = Liveness(
        settings.heartbeat_interval, settings.stale_after_beats, settings.down_after_beats
    )
    app[CATALOG] = CatalogCache()
    app[http_keys.SIGNING_KEYS] = http_keys.SigningKeys(settings.keys())
    app[JOBS] = JobState()  # the fill plan itself lives in the store (replicas share it)
    registry = new_registry()
    app[REGISTRY_KEY] = registry
    app[REQUESTS] = Counter(
        "vcdn_control_requests",
        "Control API requests.",
        ["method", "route", "status"],
        registry=registry,
    )
    registry.register(BeatStats(app))
    app[LATENCY] = Histogram(
        "vcdn_control_request_seconds",
        "Control API request latency.",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        owned = store is None
        app[STORE] = await open_store(settings.db) if store is None else store
        event(log, "store_open", kind=app[STORE].kind)
        beats = HeartbeatBuffer(
            app[STORE],
            settings.popularity_half_life,
            delay=settings.heartbeat_flush_delay,
            history_every=settings.heartbeat_history_every,
            history_rows=settings.history_rows,
        )
        app[BEATS] = beats
        lease = app[STORE].jobs_lease()
        tasks = [asyncio.create_task(run_jobs(app, lease)), asyncio.create_task(beats.run())]
        try:
            yield
        finally:
            await cancel_all(tasks)
            await beats.close()
            await lease.release()
            if owned:
                await app[STORE].close()

    app.cleanup_ctx.append(lifecycle)
    # The API, the player and the operator dashboard, and the document of all of them.
    mount(app, api.table())
    app[DOCUMENT] = api.document_text()
    return app
