"""Prometheus metrics of the project channel (exported by ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SOCKETS = Gauge("icreate_project_sockets", "Open project-channel sockets on this process")
EVENTS = Counter("icreate_project_events_total", "Project events published (file tree, runs)")
ERRORS = Counter(
    "icreate_project_errors_total", "Bad client messages answered with an error", ["code"]
)
SAVES = Counter("icreate_editor_state_saves_total", "Editor states written", ["outcome"])
