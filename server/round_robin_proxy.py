"""A tiny round-robin proxy for ``make cluster`` (HTTP and WebSocket alike).

Each accepted connection is relayed to the next backend that accepts a connection; a
backend that refuses is skipped. Connection-level balancing is what nginx's ``upstream``
does for WebSockets too: a socket stays on the node it landed on, and when that node dies
the client reconnects through the proxy to another one. Requests are relayed as HTTP
(``server/http_relay.py``) so that each carries the client's real address in
``X-Forwarded-For``, which the nodes believe from this proxy only (``TRUSTED_PROXIES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from server.http_relay import relay_http

log = logging.getLogger(__name__)


class RoundRobinProxy:
    def __init__(self, host: str, port: int, backends: list[tuple[str, int]]) -> None:
        self.host = host
        self.port = port
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connect_backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            except (OSError, TimeoutError):
                log.debug("backend %s:%d refused; trying the next", host, port)
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            backend = await self._connect_backend()
            if backend is None:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
                return
            up_writer = backend[1]
            try:
                await relay_http((reader, writer), backend, writer.get_extra_info("peername")[0])
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._connections.discard(task)
