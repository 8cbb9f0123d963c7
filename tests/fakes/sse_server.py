"""A scriptable streaming HTTP server: each request plays the next ``Script``.

It records every request (body, headers, arrival time) and notices when a client goes
away mid-stream (``disconnects``), which is how tests prove that cancelling a reply
closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # a whole non-streaming body (errors)
    chunks: list[bytes] = field(default_factory=list)  # streamed, flushed one by one
    delay_s: float = 0.0  # pause before each chunk
    first_delay_s: float = 0.0  # pause before the first chunk
    hold_open: bool = False  # after the chunks, keep the response open until the client goes


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


class FakeSSEServer:
    path = "/"

    def __init__(self) -> None:
        self.scripts: deque[Script] = deque()
        self.default: Script | None = None
        self.requests: list[SeenRequest] = []
        self.disconnects = 0
        self.completed = 0
        self.disconnected = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def play(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    def check(self, request: web.Request) -> web.Response | None:
        """Subclasses refuse malformed requests the way the real service does."""
        return None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        self.requests.append(
            SeenRequest(request.path, dict(request.headers), body, time.monotonic())
        )
        refused = self.check(request)
        if refused is not None:
            return refused
        script = self.scripts.popleft() if self.scripts else self.default
        if script is None:
            return web.json_response({"error": {"message": "no script"}}, status=500)
        if script.body is not None:
            return web.Response(status=script.status, body=script.body, headers={
                "content-type": "application/json", **script.headers})
        resp = web.StreamResponse(status=script.status, headers={
            "content-type": "text/event-stream", "cache-control": "no-cache", **script.headers})
        await resp.prepare(request)
        try:
            for index, chunk in enumerate(script.chunks):
                delay = script.first_delay_s if index == 0 else script.delay_s
                if delay:
                    await asyncio.sleep(delay)
                if _closing(request):
                    raise ConnectionResetError
                await resp.write(chunk)
            while script.hold_open:
                await asyncio.sleep(0.01)
                if _closing(request):
                    raise ConnectionResetError
            await resp.write_eof()
            self.completed += 1
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            self.disconnected.set()
            with contextlib.suppress(Exception):
                request.transport and request.transport.close()  # type: ignore[func-returns-value]
        return resp


def _closing(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def split_bytes(data: bytes, size: int) -> list[bytes]:
    """``data`` in chunks of ``size`` bytes (cutting through UTF-8 characters on purpose)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
