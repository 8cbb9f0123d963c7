"""The uvicorn options every way of serving the app shares (CLI, tests, benchmarks)."""

from __future__ import annotations

from typing import Any

from server.logs import uvicorn_log_config
from server.settings import Settings
from server.ws_transport import with_deflate


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        # Direct channels for document sockets (server/ws_transport.py), with our own
        # permessage-deflate for large messages only (sockets/deflate.py).
        "ws": with_deflate(settings.collab.deflate_min_bytes),
        # uvicorn's deflate stays off: it compresses every frame (small update frames cost
        # more CPU than they save) and keeps a zlib context per socket (bench/README.md).
        "ws_per_message_deflate": False,
        # After a restart every stock client reconnects within the same few milliseconds
        # (y-websocket's backoff has no jitter): 5,000 handshakes overflowed uvicorn's
        # default accept queue (2048), and a dropped SYN is retried only after 1 s. The
        # kernel caps this at net.core.somaxconn (4096 by default since Linux 5.4).
        "backlog": 8192,
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
    }
