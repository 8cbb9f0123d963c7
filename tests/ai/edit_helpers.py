"""Shared steps of the AI-edit tests: REST calls, the project channel, typists."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.ai.helpers import token
from tests.collab.node_agent import NodeAgent
from tests.support.servers import LiveServer


async def call(server: LiveServer, user: uuid.UUID, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, f"{server.url}/api/v1{path}", json=body,
        headers={"authorization": f"Bearer {token(user)}"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


class ProjectEvents:
    """The project channel of one member, every event kept."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.http = http
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: LiveServer, project: uuid.UUID, user: uuid.UUID
                   ) -> ProjectEvents:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"{server.ws_url}/ws/projects/{project}?token={token(user)}")
        return cls(http, ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))

    async def wait(self, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["type"] == kind and all(
                    (event.get("edit") or event).get(k) == v for k, v in match.items()
                ):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} {match} in {self.events[-5:]}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
        self._reader.cancel()


@dataclass
class Typist:
    """A Node Yjs client typing its own characters (distinct code points per keystroke)."""

    agent: NodeAgent
    base: int
    rng: random.Random
    typed: list[str] = field(default_factory=list)

    def owns(self, char: str) -> bool:
        return self.base < ord(char) <= self.base + len(self.typed)

    def _next(self) -> str:
        char = chr(self.base + len(self.typed) + 1)
        self.typed.append(char)
        return char

    async def type_at(self, index: int) -> None:
        await self.agent.call("insert", index=index, value=self._next())

    async def type_between(self, lo: str | None, hi: str | None) -> None:
        """A keystroke at a random place between the markers ``lo`` and ``hi`` (found in
        the client's text when it types, as a person sees it)."""
        await self.agent.call("insert_between", lo=lo, hi=hi, at=self.rng.random(),
                              value=self._next())
