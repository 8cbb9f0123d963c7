"""The uvicorn options every way of serving the app shares (CLI, tests, benchmarks)."""

from __future__ import annotations

from typing import Any

from server.logs import uvicorn_log_config
from server.settings import Settings
from server.ws_transport import DirectWebSocketProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        # Direct channels for document sockets (server/ws_transport.py).
        "ws": DirectWebSocketProtocol,
        # Deliberately off: compressing small update frames costs more CPU than it saves
        # on the wire, and large syncs are rare (bench/README.md).
        "ws_per_message_deflate": False,
        "ws_ping_interval": settings.collab.keepalive_s,
        # Sockets carry their token in the query string: redacted from every log line.
        "log_config": uvicorn_log_config(),
    }
