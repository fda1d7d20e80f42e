"""Fill planning: popularity prediction, placement across a site, the nightly manifests."""

from __future__ import annotations

from origin.control.planning.plan import PlanSettings, manifest_for, moved, plan_fill

__all__ = ["PlanSettings", "manifest_for", "moved", "plan_fill"]
