"""Prometheus metrics: one registry per service instance and an aiohttp handler.

A registry per app (rather than the global default) lets tests build many apps in one
process without duplicate-metric errors.

Several worker processes behind one port (SO_REUSEPORT) are one service: `share_across_
processes(dir)`, called in the parent before it forks, puts prometheus-client in its
multiprocess mode (each process's counters in memory-mapped files under `dir`), and
`scrape_registry` then sums every process's files, so a scrape that lands on any worker
reports the whole service.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY_KEY = web.AppKey("vcdn_metrics_registry", CollectorRegistry)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def share_across_processes(directory: Path) -> None:
    """Counters of this process and of every process forked after this call go to files
    under `directory` (emptied first: a restarted service counts from zero)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[_DIR_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()


def shared_dir() -> str | None:
    return os.environ.get(_DIR_ENV)


def scrape_registry(registry: CollectorRegistry, *local: Collector) -> CollectorRegistry:
    """What a scrape renders: `registry` itself, or in multiprocess mode the sum over
    every process's files plus `local` collectors (values that are already whole, e.g.
    read from a shared index)."""
    path = shared_dir()
    if path is None:
        for collector in local:
            registry.register(collector)
        return registry
    combined = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(combined, path)
    for collector in local:
        combined.register(collector)
    return combined


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = render(request.app[REGISTRY_KEY])
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
