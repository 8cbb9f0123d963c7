"""A small aiohttp server accepting Sentry envelopes, as Sentry's ingestion endpoint does.

Wire format (Sentry's developer docs, "Envelopes"): ``POST /api/{project_id}/envelope/`` with
an ``X-Sentry-Auth: Sentry sentry_key=..., sentry_version=7, ...`` header, a body that may be
compressed (``Content-Encoding: gzip``, ``br`` or ``deflate``), made of newline-separated
parts: an envelope header (JSON, with ``event_id``), then per item an item header (JSON with
``type`` and optionally ``length``) and its payload (``length`` bytes, else up to the next
newline). The answer is ``200 {"id": event_id}``; ``status`` makes it answer like a Sentry
under load instead (``429`` with ``Retry-After``, or ``500``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port


@dataclass
class Envelope:
    project: str
    auth: str
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for head, payload in self.items if head.get("type") == "event"]


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    header_line, _, rest = raw.partition(b"\n")
    header = json.loads(header_line)
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        length = item.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:]
            rest = rest.removeprefix(b"\n")
        items.append((item, payload))
    return header, items


@dataclass
class FakeSentry:
    status: int = 200
    port: int = field(default_factory=free_port)
    envelopes: list[Envelope] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/42"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _envelope(self, request: web.Request) -> web.Response:
        auth = request.headers.get("X-Sentry-Auth", "")
        if "sentry_key=publickey" not in auth:
            return web.json_response({"detail": "bad auth"}, status=401)
        # aiohttp has undone the Content-Encoding (gzip, deflate, br) already.
        raw = await request.read()
        self.raw_bodies.append(raw)
        header, items = parse_envelope(raw)
        self.envelopes.append(Envelope(request.match_info["project"], auth, header, items))
        if self.status == 429:
            return web.json_response({"detail": "rate limited"}, status=429,
                                     headers={"Retry-After": "60"})
        if self.status != 200:
            return web.json_response({"detail": "internal error"}, status=self.status)
        return web.json_response({"id": header.get("event_id")})

    async def wait_event(self, event_id: str, timeout_s: float = 15.0) -> dict[str, Any]:
        """The event with this id, once an envelope carrying it arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for envelope in self.envelopes:
                for event in envelope.events():
                    if event.get("event_id") == event_id:
                        return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no envelope with event {event_id} within {timeout_s}s")
