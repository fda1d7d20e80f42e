"""Fill planning: popularity prediction, placement across a site, the nightly manifests."""

from __future__ import annotations

from origin.control.planning.plan import PlanSettings, moved, plan_fill

__all__ = ["PlanSettings", "moved", "plan_fill"]
