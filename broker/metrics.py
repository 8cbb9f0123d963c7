"""Prometheus metrics of the cluster broker (exported by ``GET /metrics`` with the rest)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTED = Gauge(
    "icreate_broker_connected",
    "1 while the Redis broker is connected and subscribed, else 0",
    ["instance"],
)
PUBLISHED = Counter("icreate_broker_published_total", "Messages published to Redis")
RECEIVED = Counter("icreate_broker_received_total", "Messages from other instances delivered")
DROPPED = Counter(
    "icreate_broker_dropped_total",
    "Messages not published (Redis down, queue full, publish error); repaired by the hubs",
    ["reason"],
)
RECONNECTS = Counter("icreate_broker_reconnects_total", "Reconnects to Redis after a loss")
