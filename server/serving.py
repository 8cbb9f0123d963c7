"""The uvicorn options every way of serving the app shares (CLI, tests, benchmarks)."""

from __future__ import annotations

from typing import Any

from server.listen import LISTEN_BACKLOG
from server.logs import uvicorn_log_config
from server.settings import Settings
from server.ws_transport import with_deflate

# The levels at which uvicorn's access lines (INFO) are written.
ACCESS_LOG_LEVELS = frozenset({"trace", "debug", "info"})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        # Direct channels for document sockets (server/ws_transport.py), with our own
        # permessage-deflate for large messages only (sockets/deflate.py).
        "ws": with_deflate(settings.collab.deflate_min_bytes),
        # uvicorn's deflate stays off: it compresses every frame (small update frames cost
        # more CPU than they save) and keeps a zlib context per socket (bench/README.md).
        "ws_per_message_deflate": False,
        # Reconnect storms after a restart (server/listen.py).
        "backlog": LISTEN_BACKLOG,
        "ws_ping_interval": settings.collab.keepalive_s,
        # The largest message any socket takes; past it, 4413 (server/ws_transport.py).
        "ws_max_size": settings.collab.max_message_bytes,
        # X-Forwarded-For decides the client address (per-ip limits, sessions) only from
        # the listed proxies. uvicorn's default trusts 127.0.0.1 (and FORWARDED_ALLOW_IPS),
        # which lets any local proxy's clients, or local clients, pick their address.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
        # Sockets carry their token in the query string: redacted from every log line.
        "log_config": uvicorn_log_config(),
        # uvicorn builds each access line (client address, quoted path) before its logger
        # drops it below INFO: off when the level would drop every line anyway.
        "access_log": settings.log_level.lower() in ACCESS_LOG_LEVELS,
    }
