"""The listening socket, opened before anything else of the server is imported.

Between exec and the end of startup (imports, migrations check, lifespan: 1.5-2 s) a port
that is not yet listening refuses connections, and a stock y-websocket client refused
during a restart backs off (100 ms doubling to 2.5 s) and comes back late. Listening first
lets the kernel queue those connections (the accept queue, ``LISTEN_BACKLOG``) until
uvicorn accepts them once the app is ready: each is served at that moment. Readiness is
what /healthz (or /readyz) answers, not whether the port accepts.

Standard library only, so that it costs nothing before the heavy imports.
"""

from __future__ import annotations

import socket

# After a restart every stock client reconnects within the same few milliseconds
# (y-websocket's backoff has no jitter): 5,000 handshakes overflowed uvicorn's default
# accept queue (2048), and a dropped SYN is retried only after 1 s. The kernel caps this
# at net.core.somaxconn (4096 by default since Linux 5.4).
LISTEN_BACKLOG = 8192


def listen_early(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
