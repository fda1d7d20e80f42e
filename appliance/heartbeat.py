"""What a heartbeat says: health checks, load since the last beat, cache room, demand.

`Beats` builds each `Heartbeat` the control loop sends and keeps what spans beats: the
load counters of the previous beat (rates are per interval) and the title requests not
yet delivered (a beat that failed to arrive must not lose them; `consumed` clears them
once the control plane took a beat). The checks of the last beat are also what the admin
API's summary shows.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from appliance import checks
from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings
from appliance.state import Status
from edge.app import Edge
from vcdn.schemas import Check, Heartbeat, Load


class Beats:
    """The heartbeat builder of one appliance (see module doc)."""

    def __init__(
        self,
        settings: ApplianceSettings,
        edge: Edge,
        status: Status,
        metrics: ApplianceMetrics,
        connections: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.edge = edge
        self.status = status
        self.metrics = metrics
        self.connections = connections
        self.checks: dict[str, Check] = {}
        self._pending_titles: Counter[str] = Counter()
        self._last_load = (time.monotonic(), 0, 0)

    async def collect(self, session: aiohttp.ClientSession) -> Heartbeat:
        s = self.settings
        store = await self.edge.run(self.edge.store.stats)
        writable, room = await asyncio.gather(
            asyncio.to_thread(checks.disk_writable, s.cache_dir),
            asyncio.to_thread(checks.free_space, s.cache_dir, s.cache_free_floor),
        )
        upstream = await checks.upstream(session, s.origin_url, self.status.upstream)
        self.checks = {"disk_writable": writable, "free_space": room, "upstream": upstream}
        self.metrics.upstream_up.labels("any").set(1 if upstream.ok else 0)
        stats = self.edge.stats
        now = time.monotonic()
        then, requests_then, sent_then = self._last_load
        requests = stats.hits + stats.misses
        elapsed = max(now - then, 1e-3)
        self._last_load = (now, requests, stats.sent)
        self._pending_titles.update(stats.take_title_requests())
        return Heartbeat(
            state=self.status.health,
            load=Load(
                requests_per_s=round((requests - requests_then) / elapsed, 3),
                bytes_per_s=round((stats.sent - sent_then) / elapsed, 1),
                connections=self.connections(),
            ),
            # What the cache may still take: its budget, unless the disk has less.
            free_bytes=min(store.free_bytes, disk_free(s.cache_dir)),
            used_bytes=store.bytes_used,
            objects=store.objects,
            bytes_served=stats.sent,
            hit_ratio=round(min(1.0, max(0.0, stats.hit_ratio)), 4),
            title_requests=dict(self._pending_titles),
            checks=dict(self.checks),
        )

    def consumed(self) -> None:
        """The control plane took the last beat: its title requests are delivered."""
        self._pending_titles.clear()


def disk_free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
