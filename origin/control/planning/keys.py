"""The control app's state for planning: the manifest last given to each appliance."""

from __future__ import annotations

from aiohttp import web

#: {appliance id: FillManifest}; the previous plan that keeps the next one stable.
PLANS = web.AppKey("control_fill_plans", dict)
