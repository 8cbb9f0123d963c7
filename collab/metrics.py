"""Prometheus metrics of the document hub (exposed by ``GET /metrics`` in server/metrics.py).

Module-level objects in the default registry: several hubs in one process (tests) share them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROOMS_LOADED = Gauge("icreate_doc_rooms_loaded", "Document rooms loaded in memory")
CONNECTIONS_OPEN = Gauge("icreate_doc_connections_open", "Open document sockets")
UPDATES_IN = Counter("icreate_doc_updates_in_total", "Document updates received", ["source"])
UPDATES_OUT = Counter("icreate_doc_updates_out_total", "Document update frames delivered")
BYTES_IN = Counter("icreate_doc_bytes_in_total", "Bytes received on document sockets")
BYTES_OUT = Counter("icreate_doc_bytes_out_total", "Bytes queued to document sockets")
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
AWARENESS_IN = Counter("icreate_doc_awareness_in_total", "Awareness updates received", ["source"])
CLOSES = Counter("icreate_doc_closes_total", "Document sockets closed by the server", ["code"])
GAP_REPAIRS = Counter(
    "icreate_doc_gap_repairs_total", "Step2 answers published for other nodes' state vectors"
)
