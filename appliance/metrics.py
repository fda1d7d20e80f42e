"""The appliance's own Prometheus series, next to the edge's in the same registry.

Sources are labelled by kind (``peer``/``origin``), not by URL, to keep cardinality
bounded; the logs carry the URL of each fetch.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PAUSE_REASONS = ("disk_full", "free_space_floor", "capacity")


class ApplianceMetrics:
    """Counters and gauges for the fill and control loops."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fill_bytes = Counter(
            "vcdn_appliance_fill_bytes", "Bytes fetched by the manifest fill, verified.",
            ["source"], registry=registry,
        )
        self.fill_files = Counter(
            "vcdn_appliance_fill_files", "Files fetched by the manifest fill, verified.",
            ["source"], registry=registry,
        )
        self.fill_rejected = Counter(
            "vcdn_appliance_fill_rejected",
            "Files rejected because their size or sha256 did not match the manifest.",
            ["source", "reason"], registry=registry,
        )
        self.fill_errors = Counter(
            "vcdn_appliance_fill_upstream_errors",
            "Fetches that failed because the source was unreachable or answered an error.",
            ["source"], registry=registry,
        )
        self.fill_title_failures = Counter(
            "vcdn_appliance_fill_title_failures",
            "Titles that could not be completed from any source in a fill run.",
            registry=registry,
        )
        self.fill_paused = Gauge(
            "vcdn_appliance_fill_paused", "1 while the fill is paused, by reason.",
            ["reason"], registry=registry,
        )
        self.fill_titles_complete = Gauge(
            "vcdn_appliance_fill_titles_complete", "Manifest titles held whole.",
            registry=registry,
        )
        self.fill_bytes_missing = Gauge(
            "vcdn_appliance_fill_bytes_missing", "Manifest bytes not yet held.",
            registry=registry,
        )
        self.heartbeats = Counter(
            "vcdn_appliance_heartbeats", "Heartbeats sent, by result.", ["result"],
            registry=registry,
        )
        self.registrations = Counter(
            "vcdn_appliance_registrations", "Registrations sent, by result.", ["result"],
            registry=registry,
        )
        self.upstream_up = Gauge(
            "vcdn_appliance_upstream_up", "1 when the upstream answered its last check.",
            ["upstream"], registry=registry,
        )
        self.draining = Gauge(
            "vcdn_appliance_draining", "1 while the appliance is draining.", registry=registry
        )
        for reason in PAUSE_REASONS:
            self.fill_paused.labels(reason).set(0)
        for source in ("peer", "origin"):
            self.fill_bytes.labels(source)
            self.fill_files.labels(source)

    def set_paused(self, reason: str | None) -> None:
        for r in PAUSE_REASONS:
            self.fill_paused.labels(r).set(1 if r == reason else 0)
