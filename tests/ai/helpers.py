"""Shared steps of the chat tests: a workspace with people, sockets, reading events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from persistence.db import Database
from server.auth.tokens import issue_access_token
from tests.conftest import TEST_JWT_SECRET
from tests.support import factories


@dataclass
class Team:
    owner: uuid.UUID
    member: uuid.UUID
    viewer: uuid.UUID
    outsider: uuid.UUID
    workspace: uuid.UUID
    project: uuid.UUID
    conversation: uuid.UUID
    other_conversation: uuid.UUID  # in the outsider's own workspace


async def make_team(db: Database) -> Team:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        member = await factories.create_user(conn)
        viewer = await factories.create_user(conn)
        outsider = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, workspace, member, "member")
        await factories.add_member(conn, workspace, viewer, "viewer")
        project = await factories.create_project(conn, workspace)
        conversation = await factories.create_conversation(conn, project, owner, "help")
        other_ws = await factories.create_workspace(conn, outsider)
        other_project = await factories.create_project(conn, other_ws)
        other = await factories.create_conversation(conn, other_project, outsider, "mine")
    return Team(owner, member, viewer, outsider, workspace, project, conversation, other)


def token(user_id: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user_id), f"{user_id}@example.test")


class ChatClient:
    """One WebSocket on a conversation, collecting every event it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.ws = ws
        self.session = session
        self.events: list[dict[str, Any]] = []
        self.cursor = 0

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def ask(self, content: str, context: dict[str, Any] | None = None) -> None:
        await self.send({"type": "user_message", "content": content, "context": context or {}})

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        if self.cursor < len(self.events):
            self.cursor += 1
            return self.events[self.cursor - 1]
        msg = await self.ws.receive(timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"socket ended: {msg.type} {msg.data!r} {msg.extra!r}")
        event: dict[str, Any] = json.loads(msg.data)
        self.events.append(event)
        self.cursor += 1
        return event

    async def until(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == kind:
                return event

    async def until_finished(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event = await self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == "done" or (event["type"] == "error" and "message_id" in event):
                return event

    def text(self, message_id: str) -> str:
        return "".join(
            e["text"] for e in self.events
            if e["type"] == "delta" and e["message_id"] == message_id
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def connect(ws_url: str, conversation: uuid.UUID, user: uuid.UUID) -> ChatClient:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(
        f"{ws_url}/ws/conversations/{conversation}?token={token(user)}"
    )
    return ChatClient(ws, session)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)
