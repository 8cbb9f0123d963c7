"""Raw sockets of a test user against cluster nodes: terminals, documents, project channel
and chat, each recording what it received and when and how it was closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from server.auth.tokens import issue_access_token
from tests.cluster.conftest import StartNodes
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.support.servers import ProcessServer


def token_for(user: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")


@dataclass
class Watched:
    """One socket read by a task until it closes."""

    kind: str
    ws: aiohttp.ClientWebSocketResponse
    frames: list[str | bytes] = field(default_factory=list)
    text: str = ""  # terminal output so far
    closed_at: float | None = None
    close_code: int | None = None
    reader: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.data)
                if self.kind == "terminal":
                    frame = json.loads(msg.data)
                    if frame[0] == "stdout":
                        self.text += str(frame[1])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append(msg.data)
            self.changed.set()
        self.closed_at = time.monotonic()
        self.close_code = self.ws.close_code
        self.changed.set()

    async def wait_for(self, needle: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            if self.closed_at is not None:
                raise AssertionError(f"{self.kind} closed ({self.close_code}) before {needle!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.text[-400:]!r}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def wait_closed(self, timeout_s: float) -> None:
        assert self.reader is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.reader), timeout_s)

    async def wait_frames(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed_at is not None:
                raise AssertionError(f"{self.kind}: {len(self.frames)} frames, not {count} "
                                     f"(closed: {self.close_code})")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    async def type(self, line: str) -> None:
        await self.ws.send_str(json.dumps(["stdin", line + "\r"]))

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader


async def open_socket(
    session: aiohttp.ClientSession, base_ws: str, path: str, user: uuid.UUID, kind: str
) -> Watched:
    ws = await session.ws_connect(f"{base_ws}{path}?token={token_for(user)}",
                                  headers={"Origin": TEST_ORIGIN}, autoping=True)
    watched = Watched(kind, ws)
    watched.start()
    return watched


async def open_terminal(
    session: aiohttp.ClientSession, base_ws: str, project: uuid.UUID, user: uuid.UUID,
    name: str = "main",
) -> Watched:
    term = await open_socket(session, base_ws, f"/ws/projects/{project}/terminals/{name}",
                             user, "terminal")
    await term.wait_frames(1, timeout_s=30)  # ["setup", {}]: attached (shell started)
    assert json.loads(term.frames[0]) == ["setup", {}], term.frames[0]
    return term


async def start_two_nodes(
    start_nodes: StartNodes, exec_root: Path, env: dict[str, str] | None = None
) -> tuple[ProcessServer, ProcessServer]:
    """Two nodes, each with its own data directory (its disk: terminal workdirs), where
    the sandbox uid can reach it (see ``exec_root``)."""
    a, b = await asyncio.gather(*(
        start_nodes(1, env={**(env or {}), "DATA_DIR": str(exec_root / f"node-{i}")})
        for i in (1, 2)
    ))
    return a[0], b[0]
