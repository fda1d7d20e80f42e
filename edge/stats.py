"""The edge's counters: Prometheus metrics plus the per-title tallies heartbeats report.

Byte totals by source say where the bytes clients received came from: ``cache`` (a hit),
``peer`` or ``origin`` (streamed while filling). Store gauges (bytes used, objects) are
read from the shared index at scrape time, so every worker reports the whole cache; with
several workers the counters are summed over all of them (`vcdn.metrics`).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.store import CacheStore
from vcdn.metrics import scrape_registry

#: Seconds; fine below the LL-HLS target of 50 ms.
BLOCKING_BUCKETS: Final = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)


class EdgeStats:
    def __init__(self, registry: CollectorRegistry, store: CacheStore) -> None:
        self.requests = Counter(
            "vcdn_edge_requests",
            "Requests by outcome (hit, miss, revalidated, stale, pass, denied, error).",
            ["result"],
            registry=registry,
        )
        self.bytes = Counter(
            "vcdn_edge_sent_bytes",
            "Body bytes sent to clients by source.",
            ["source"],
            registry=registry,
        )
        self.fills = Counter(
            "vcdn_edge_fills",
            "Objects filled into the cache by source.",
            ["source"],
            registry=registry,
        )
        self.fill_bytes = Counter(
            "vcdn_edge_fill_bytes",
            "Bytes filled into the cache by source.",
            ["source"],
            registry=registry,
        )
        self.evictions = Counter(
            "vcdn_edge_evictions", "Objects evicted to make room.", registry=registry
        )
        store.on_evict = self.evictions.inc
        # LL-HLS: a crowd of players blocks on the same playlist request (edge.llhls). How
        # long after the upstream's answer reached this edge each waiting player's answer
        # was handed to its connection, and how many answers were serialised for them.
        self.blocking_answer = Histogram(
            "vcdn_edge_blocking_answer_seconds",
            "Blocking playlist answers: seconds from the upstream answer's arrival at the "
            "edge to each waiting player's answer handed to its connection.",
            buckets=BLOCKING_BUCKETS,
            registry=registry,
        )
        self.blocking_renders = Counter(
            "vcdn_edge_blocking_renders",
            "Blocking playlist answers serialised for waiting players (one per crowd when "
            "collapsed, one per player otherwise).",
            registry=registry,
        )
        #: What /metrics renders: every worker's counters when they share (`vcdn.metrics`).
        self.scrape = scrape_registry(registry, _StoreCollector(store), _TlsCollector())
        # Labelled children looked up once: labels() costs more than inc() on a hot path.
        self._hit = self.requests.labels("hit")
        self._cache_bytes = self.bytes.labels("cache")
        self.titles: Tally[str] = Tally()
        self.hits = 0
        #: Hits answered by `edge.fastpath` (a subset of `hits`).
        self.fast_hits = 0
        #: Connections `edge.fastpath` handed to aiohttp (a miss, a large body, odd framing).
        self.handoffs = 0
        self.misses = 0
        self.sent = 0

    def request(self, result: str, title: str = "") -> None:
        self.requests.labels(result).inc()
        if result == "hit":
            self.hits += 1
        elif result in ("miss", "revalidated", "pass"):
            self.misses += 1
        if title:
            self.titles[title] += 1

    def fast_hit(self, title: str, n: int) -> None:
        """`request("hit", title)` and `sent_bytes("cache", n)` in one call."""
        self._hit.inc()
        self.hits += 1
        self.fast_hits += 1
        self.titles[title] += 1
        if n > 0:
            self._cache_bytes.inc(n)
            self.sent += n

    def sent_bytes(self, source: str, n: int) -> None:
        if n > 0:
            self.bytes.labels(source).inc(n)
            self.sent += n

    def filled(self, source: str, n: int) -> None:
        self.fills.labels(source).inc()
        self.fill_bytes.labels(source).inc(n)

    def take_title_requests(self) -> dict[str, int]:
        """Requests per title since the last call (for the appliance heartbeat)."""
        out = dict(self.titles)
        self.titles.clear()
        return out

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class _StoreCollector(Collector):
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.store.stats()
        yield GaugeMetricFamily(
            "vcdn_edge_cache_bytes", "Bytes stored in the cache.", value=s.bytes_used
        )
        yield GaugeMetricFamily("vcdn_edge_cache_objects", "Objects stored.", value=s.objects)
        yield GaugeMetricFamily(
            "vcdn_edge_cache_capacity_bytes", "Cache capacity.", value=s.capacity
        )


class _TlsCollector(Collector):
    """Which send path TLS hits take in this process (`vcdn.tls_io.tls_send_path`):
    ``ktls+sendfile`` where the kernel encrypts, else ``pread+write``."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from vcdn.tls_io import SEND_COPY, SEND_KTLS, tls_send_path

        used = tls_send_path()
        family = GaugeMetricFamily(
            "vcdn_edge_tls_send_path", "1 for the send path TLS hit bodies take.",
            labels=["path"])
        for path in (SEND_KTLS, SEND_COPY):
            family.add_metric([path], 1 if path == used else 0)
        yield family
