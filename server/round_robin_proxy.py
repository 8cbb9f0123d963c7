"""A tiny round-robin TCP proxy for ``make cluster`` (HTTP and WebSocket alike).

Each accepted connection is piped, byte for byte, to the next backend that accepts a
connection; a backend that refuses is skipped. Connection-level balancing is what nginx's
``upstream`` does for WebSockets too: a socket stays on the node it landed on, and when
that node dies the client reconnects through the proxy to another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


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
            up_reader, up_writer = backend
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._connections.discard(task)
