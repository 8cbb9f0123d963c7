"""Prometheus metrics of the document hub (exposed by ``GET /metrics`` in server/metrics.py).

Module-level objects in the default registry: several hubs in one process (tests) share them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

ROOMS_LOADED = Gauge("icreate_doc_rooms_loaded", "Document rooms loaded in memory")
CONNECTIONS_OPEN = Gauge("icreate_doc_connections_open", "Open document sockets")
BROADCAST_SECONDS = Histogram(
    "icreate_doc_broadcast_seconds",
    "From receiving an update to having queued it for every local peer",
    buckets=(0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
LOG_LAG_SECONDS = Gauge(
    "icreate_doc_log_lag_seconds", "Age of the oldest update not yet in the update log"
)
LOG_ROWS = Counter("icreate_doc_log_rows_total", "Update-log rows written")
LOG_FLUSH_FAILURES = Counter("icreate_doc_log_flush_failures_total", "Failed group commits")
COMPACTION_SECONDS = Histogram(
    "icreate_doc_compaction_seconds",
    "Duration of a compaction",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
COMPACTION_BYTES = Histogram(
    "icreate_doc_compaction_state_bytes",
    "Size of the CRDT state written by a compaction",
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
)
COMPACTION_FAILURES = Counter("icreate_doc_compaction_failures_total", "Failed compactions")
COMPACTIONS = Counter(
    "icreate_doc_compactions_total",
    "Compactions by what they merged: memory (what this process holds) or store (read back)",
    ["source"],
)
# Every load of a document from the store into a room (single-flight: once per document even
# when hundreds of sockets ask at once; bench/ storm counts them after a restart).
LOADS = Counter("icreate_doc_loads", "Documents loaded from the store into a room")
CLOSES = Counter("icreate_doc_closes_total", "Document sockets closed by the server", ["code"])
AWARENESS_DROPPED = Counter(
    "icreate_doc_awareness_dropped_total",
    "Awareness entries dropped: foreign_id (a client id another socket or node holds), "
    "invalid_state (not JSON, or not an object or null)",
    ["reason"],
)
GAP_REPAIRS = Counter(
    "icreate_doc_gap_repairs_total", "Step2 answers published for other nodes' state vectors"
)

# Edit -> broadcast latency is observed for one update in this many (the hot path stays lean).
BROADCAST_SAMPLE = 8


class HubStats:
    """Per-message counters as plain ints (a Prometheus ``inc`` per message costs more than
    the rest of the relay); read when /metrics is scraped."""

    __slots__ = (
        "__weakref__", "awareness_in_broker", "awareness_in_client", "bytes_in", "bytes_out",
        "updates_in_broker", "updates_in_client", "updates_out",
    )

    def __init__(self) -> None:
        self.updates_in_client = 0
        self.updates_in_broker = 0
        self.updates_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.awareness_in_client = 0
        self.awareness_in_broker = 0
        _ALL_STATS.add(self)


_ALL_STATS: weakref.WeakSet[HubStats] = weakref.WeakSet()


class _HubStatsCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = list(_ALL_STATS)

        def total(name: str) -> int:
            return sum(getattr(s, name) for s in stats)

        updates_in = CounterMetricFamily(
            "icreate_doc_updates_in", "Document updates received", labels=["source"]
        )
        updates_in.add_metric(["client"], total("updates_in_client"))
        updates_in.add_metric(["broker"], total("updates_in_broker"))
        yield updates_in
        yield CounterMetricFamily(
            "icreate_doc_updates_out", "Document update frames delivered",
            value=total("updates_out"),
        )
        yield CounterMetricFamily(
            "icreate_doc_bytes_in", "Bytes received on document sockets", value=total("bytes_in")
        )
        yield CounterMetricFamily(
            "icreate_doc_bytes_out", "Bytes queued to document sockets", value=total("bytes_out")
        )
        awareness = CounterMetricFamily(
            "icreate_doc_awareness_in", "Awareness updates received", labels=["source"]
        )
        awareness.add_metric(["client"], total("awareness_in_client"))
        awareness.add_metric(["broker"], total("awareness_in_broker"))
        yield awareness


REGISTRY.register(_HubStatsCollector())
