"""An oversized WebSocket message closes with 4413 on every socket kind (README, DESIGN §3).

The transport's limit is ``WS_MAX_MESSAGE_BYTES``; websockets' own answer past it is 1009.
The messages are sent whole by a stock client, so the close frame must reach it while it
is still writing (the server half-closes instead of resetting the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.client import Api
from tests.conftest import TEST_ORIGIN
from tests.support.servers import LiveServer

# Past uvicorn's default ws_max_size (16 MiB), where websockets answered 1009.
OVERSIZED = 17 * 1024 * 1024


async def close_code_after_sending(url: str, message: Any) -> int | None:
    """Send ``message`` (bytes, text, or an async iterator of fragments); the close code."""
    ws = await connect(url, origin=TEST_ORIGIN, max_size=None)  # type: ignore[arg-type]
    try:
        await ws.send(message)
        async with asyncio.timeout(15):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
    return ws.close_code


@pytest.fixture
async def sockets(live_server: Callable[..., Awaitable[LiveServer]]) -> dict[str, str]:
    """One URL per socket kind, for a member of a project with a file and a conversation."""
    server = await live_server()
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        user = await api.sign_up()
        token = user.token
        workspace = await api.call("POST", "/workspaces", {"name": "W"}, token=token)
        project = (await api.call(
            "POST", f"/workspaces/{workspace.body['id']}/projects", {"name": "P"}, token=token
        )).body["id"]
        file_id = (await api.call(
            "POST", f"/projects/{project}/files", {"path": "a.py", "content": "x"}, token=token
        )).body["id"]
        conversation = (await api.call(
            "POST", f"/projects/{project}/conversations", {"title": "c"}, token=token
        )).body["id"]
    base = server.ws_url
    return {
        "document": f"{base}/ws/docs/{file_id}?token={token}",
        "project": f"{base}/ws/projects/{project}?token={token}",
        "chat": f"{base}/ws/conversations/{conversation}?token={token}",
        "terminal": f"{base}/ws/projects/{project}/terminals/t{uuid.uuid4().hex[:6]}"
                    f"?token={token}",
    }


@pytest.mark.parametrize("kind", ["document", "project", "chat", "terminal"])
async def test_a_17_mb_message_closes_4413(sockets: dict[str, str], kind: str) -> None:
    message: bytes | str = b"\x00" * OVERSIZED if kind == "document" else "x" * OVERSIZED
    assert await close_code_after_sending(sockets[kind], message) == 4413


async def test_a_message_grown_past_the_limit_by_fragments_closes_4413(
    sockets: dict[str, str],
) -> None:
    chunk = b"\x00" * (3 * 1024 * 1024)

    async def fragments() -> AsyncIterator[bytes]:
        for _ in range(6):  # 18 MB in all, each fragment under the 8 MB limit
            yield chunk

    assert await close_code_after_sending(sockets["document"], fragments()) == 4413
