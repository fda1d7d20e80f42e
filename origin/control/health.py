"""Appliance state, pure: what steering should think of an appliance right now.

The control plane never trusts a state it was told long ago: an appliance that stops
beating becomes `stale` after a few missed beats (steering may still use it as a last
resort) and `down` after many, whatever its last heartbeat said.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcdn.schemas import ApplianceState, HealthState


@dataclass(frozen=True, slots=True)
class Liveness:
    """How long silence is tolerated, in heartbeat intervals."""

    interval: float
    stale_after_beats: float = 3.0
    down_after_beats: float = 30.0

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        if not 0 < self.stale_after_beats <= self.down_after_beats:
            raise ValueError("need 0 < stale_after_beats <= down_after_beats")


def state(
    last_heartbeat: float | None, reported: HealthState | None, now: float, live: Liveness
) -> ApplianceState:
    """Computed state from the last beat's time and what it reported."""
    if last_heartbeat is None or reported is None:
        return "down"  # registered but never beat: nothing says it serves
    silence = now - last_heartbeat
    if silence > live.down_after_beats * live.interval or reported == "unhealthy":
        return "down"
    if silence > live.stale_after_beats * live.interval:
        # Stale wins over draining: a silent appliance may not even be draining any more.
        return "stale"
    if reported == "draining":
        return "draining"
    return "healthy"
