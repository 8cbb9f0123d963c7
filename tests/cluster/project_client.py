"""A project-channel client for tests: one aiohttp socket and an inbox to wait on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp


class ProjectClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, session: aiohttp.ClientSession, url: str, origin: str
    ) -> ProjectClient:
        client = cls(await session.ws_connect(url, headers={"Origin": origin}))
        client.hello = await client.expect_type("hello")
        return client

    async def send(self, body: dict[str, Any] | str | bytes) -> None:
        if isinstance(body, bytes):
            await self.ws.send_bytes(body)
        else:
            await self.ws.send_str(body if isinstance(body, str) else json.dumps(body))

    async def expect(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        for message in self.inbox:
            if check(message):
                self.inbox.remove(message)
                return message
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message; got {self.inbox}")
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                raise AssertionError(f"no matching message in time; got {self.inbox}") from None
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {msg.type} {self.ws.close_code}")
            body = json.loads(msg.data)
            if check(body):
                return body
            self.inbox.append(body)

    async def expect_type(self, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        return await self.expect(lambda m: m["type"] == kind, timeout_s)

    async def closed(self, timeout_s: float = 10.0) -> int | None:
        """Wait for the server to close the socket; its close code."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            msg = await self.ws.receive(timeout=deadline - time.monotonic())
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return self.ws.close_code
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.inbox.append(json.loads(msg.data))
        raise AssertionError("socket not closed in time")
