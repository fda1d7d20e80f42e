"""What the appliance knows about itself right now: one mutable record shared by the loops.

The heartbeat, the fill loop and the admin API all read and write it on the one event
loop thread, so it needs no lock. `snapshot` is the JSON the admin API and
`appliance-ctl status` show.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vcdn.schemas import Check, HealthState

RunState = Literal["starting", "serving", "draining", "stopping"]


@dataclass
class FillProgress:
    window: str = ""
    window_open: bool = False
    running: bool = False
    titles_total: int = 0
    titles_complete: int = 0
    bytes_total: int = 0
    bytes_missing: int = 0
    bytes_fetched: int = 0  # received this pass, as it arrives (rejected bytes included)
    current: str = ""
    paused: str = ""  # why the fill stopped itself (disk full, floor), "" when it did not
    last_run_at: float | None = None
    last_error: str = ""
    manifest_at: float | None = None
    from_peers: int = 0  # files, since start
    from_origin: int = 0
    rejected: int = 0


@dataclass
class Status:
    appliance: str
    site: str
    state: RunState = "starting"
    registered: bool = False
    last_heartbeat: float | None = None
    heartbeat_error: str = ""
    control_ok: bool = False
    started_at: float = field(default_factory=time.time)
    upstream: dict[str, Check] = field(default_factory=dict)
    fill: FillProgress = field(default_factory=FillProgress)

    @property
    def health(self) -> HealthState:
        """What heartbeats report: steering stops sending clients unless `healthy`."""
        if self.state in ("draining", "stopping"):
            return "draining"
        return "healthy"

    def snapshot(self) -> dict[str, Any]:
        out = asdict(self)
        out["health"] = self.health
        out["upstream"] = {k: {"ok": v.ok, "detail": v.detail} for k, v in self.upstream.items()}
        return out
