"""Prometheus metrics: one registry per service instance and an aiohttp handler.

A registry per app (rather than the global default) lets tests build many apps in one
process without duplicate-metric errors.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

REGISTRY_KEY = web.AppKey("vcdn_metrics_registry", CollectorRegistry)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = render(request.app[REGISTRY_KEY])
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
