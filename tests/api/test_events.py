"""File-tree changes made over REST reach the project channel; uploads reach the document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from broker.local import LocalBroker
from tests.api.client import Api
from tests.support.servers import LiveServer


async def _next_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event: dict[str, Any] = json.loads(message.data)
            if event.get("type") == kind:
                return event


async def test_tree_events_on_the_project_channel(api: Api, server: LiveServer) -> None:
    user = await api.sign_up()
    ws_row = await api.ok("POST", "/workspaces", {"name": "Events"}, token=user.token)
    project = await api.ok("POST", f"/workspaces/{ws_row['id']}/projects", {"name": "P"},
                           token=user.token)
    pid = project["id"]
    url = f"{server.ws_url}/ws/projects/{pid}?token={user.token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await _next_event(ws, "hello")
        folder = await api.ok("POST", f"/projects/{pid}/files", {"path": "src", "type": "folder"},
                              token=user.token)
        created = await _next_event(ws, "file.created")
        assert created["file"]["id"] == folder["id"] and created["file"]["path"] == "src"

        main = await api.ok("POST", f"/projects/{pid}/files", {"path": "main.py"},
                            token=user.token)
        await _next_event(ws, "file.created")
        await api.ok("PATCH", f"/files/{main['id']}", {"parent_id": folder["id"]},
                     token=user.token)
        moved = await _next_event(ws, "file.moved")
        assert moved["file"]["path"] == "src/main.py" and moved["old_path"] == "main.py"
        await api.ok("PATCH", f"/files/{folder['id']}", {"name": "lib"}, token=user.token)
        renamed = await _next_event(ws, "file.renamed")
        assert renamed["file"]["path"] == "lib"

        await api.ok("PUT", f"/files/{main['id']}/content", {"content": "print(1)\n"},
                     token=user.token)
        updated = await _next_event(ws, "file.updated")
        assert updated["file"]["size_bytes"] == len("print(1)\n")
        read = await api.ok("GET", f"/files/{main['id']}", token=user.token)
        assert read["content"] == "print(1)\n" and read["path"] == "lib/main.py"

        await api.call("DELETE", f"/files/{folder['id']}", token=user.token)
        deleted = await _next_event(ws, "file.deleted")
        assert deleted["file"]["is_deleted"] is True
        await api.ok("POST", f"/files/{folder['id']}/restore", token=user.token)
        await _next_event(ws, "file.restored")


async def test_role_changes_are_announced_to_other_nodes(api: Api, server: LiveServer) -> None:
    # Another "node" on the live server's in-process bus.
    other = LocalBroker("observer", server.app.state.services.broker.bus)
    await other.start()
    seen: list[dict[str, Any]] = []

    async def handler(channel: str, payload: bytes) -> None:
        seen.append(json.loads(payload))

    try:
        owner = await api.sign_up()
        member = await api.sign_up()
        ws_row = await api.ok("POST", "/workspaces", {"name": "Access"}, token=owner.token)
        wid = ws_row["id"]
        await other.subscribe(f"access:{wid}", handler)
        await api.ok("POST", f"/workspaces/{wid}/members", {"email": member.email},
                     token=owner.token)
        await api.ok("PATCH", f"/workspaces/{wid}/members/{member.id}", {"role": "viewer"},
                     token=owner.token)
        await api.call("DELETE", f"/workspaces/{wid}/members/{member.id}", token=owner.token)
        assert [(e["type"], e["user_id"], e["role"]) for e in seen] == [
            ("member.updated", member.id, "viewer"),
            ("member.removed", member.id, None),
        ]
    finally:
        await other.close()
