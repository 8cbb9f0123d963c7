"""Bad input on /ws/docs: each fault gets its close code; the document and others carry on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab import protocol
from collab.merge import new_doc
from server.auth.tokens import issue_access_token
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_until
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


async def close_code_after(ws: ClientConnection, frame: bytes | str | None) -> int | None:
    """Send ``frame`` (if any) and read until the server closes; the close code."""
    try:
        if frame is not None:
            await ws.send(frame)
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def sync_fresh(ws: ClientConnection) -> tuple[Doc[Any], Text]:
    """Step1 with an empty state vector; the document the server's Step2 gives."""
    doc, text = new_doc()
    await ws.send(protocol.sync_step1(b"\x00"))
    async with asyncio.timeout(5):
        while True:
            frame = protocol.parse_frame(await ws.recv())  # type: ignore[arg-type]
            if frame.kind == protocol.MSG_SYNC and frame.sub == protocol.SYNC_STEP2:
                doc.apply_update(frame.payload)
                return doc, text


async def served_text(server: LiveServer, file_id: object, token: str) -> str:
    """The text a fresh client syncs from the server (Step1 -> Step2)."""
    async with connect(doc_url(server, file_id, token)) as ws:
        _, text = await sync_fresh(ws)
        return str(text)


def doc_url(server: LiveServer, file_id: object, token: str) -> str:
    return f"{server.ws_url}/ws/docs/{file_id}?token={token}"


BAD_FRAMES: list[tuple[str, bytes | str, int]] = [
    ("truncated varint", b"\x00\x02\x80", 4400),
    ("garbage update", b"\x00\x02\x04garb", 4400),
    ("garbage state vector", b"\x00\x00\x03\xff\xff\xff", 4400),
    ("unknown message type", b"\x07\x01", 4400),
    ("text frame", "text frame", 4400),
    ("huge frame", protocol.sync_update(b"\x00" * (70 * 1024)), 4413),
]


async def test_bad_frames_close_the_sender_only(live_server: StartServer,
                                                world: DocWorld) -> None:
    server = await live_server(world.settings)
    await bad_frames_close_the_sender_only(server.ws_url, world)


async def bad_frames_close_the_sender_only(
    base: str, world: DocWorld, codes: dict[str, int] | None = None
) -> None:
    """Each of ``BAD_FRAMES`` (with ``codes`` overriding a close code by name) closes its
    sender only; the document stays intact, served and persisted, for its other client."""
    file_id = await world.new_file("intact")
    token = world.token(world.owner)
    good = await NodeAgent.start(base, file_id, token)
    try:
        await good.wait_synced()
        expected = "intact"
        for name, frame, code in BAD_FRAMES:
            async with connect(f"{base}/ws/docs/{file_id}?token={token}") as ws:
                first = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(first, bytes) and first[:2] == b"\x00\x00"  # Step1
                assert await close_code_after(ws, frame) == (codes or {}).get(name, code), name
            await good.call("append", value="!")
            expected += "!"
            async with connect(f"{base}/ws/docs/{file_id}?token={token}") as ws:
                _, text = await sync_fresh(ws)
                assert str(text) == expected, name
        await wait_until(lambda: _content_is(world, file_id, expected))
        assert good.close_codes() == []
    finally:
        await good.stop()


async def _content_is(world: DocWorld, file_id: uuid.UUID, expected: str) -> bool:
    return await world.content(file_id) == expected


async def test_refused_connections(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("x")
    stranger = await world.new_user(None)
    secret = world.settings.jwt_secret
    expired = issue_access_token(secret, str(world.owner), None, now=time.time() - 7200)
    async with world.db.service() as conn:
        from tests.support import factories

        folder = await factories.create_file(conn, world.project_id, "dir", type="folder")
    cases = [
        (doc_url(server, uuid.uuid4(), world.token(world.owner)), 4404),
        (doc_url(server, "not-a-uuid", world.token(world.owner)), 4404),
        (doc_url(server, folder, world.token(world.owner)), 4404),
        (doc_url(server, file_id, world.token(stranger)), 4403),
        (doc_url(server, file_id, expired), 4401),
        (doc_url(server, file_id, "garbage"), 4401),
        (f"{server.ws_url}/ws/docs/{file_id}", 4401),
    ]
    for url, code in cases:
        async with connect(url) as ws:
            assert await close_code_after(ws, None) == code, url


async def test_deleted_file_closes_sockets(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("x")
    token = world.token(world.owner)
    async with connect(doc_url(server, file_id, token)) as ws:
        await ws.recv()
        hub = server.app.state.services.documents
        await hub.close_file(file_id, 4404, "file deleted")
        assert await close_code_after(ws, None) == 4404


def flood_until_slow(room: Any) -> tuple[bytes, int]:
    """Broadcast 64 KB updates until the room's first peer is closed as a slow consumer:
    the frame and how many were sent before the close."""
    peer = room.peers[0]
    frame = protocol.sync_update(b"\x00" * 65536)
    sent = 0
    # Synchronous: the client cannot read until the loop ends, so the kernel's socket
    # buffers fill first, then the server's own backlog, then the bound is hit.
    while not peer.closed and sent < 1000:
        room.broadcast(frame)
        sent += 0 if peer.closed else 1
    assert peer.closed, "64 MB queued and the slow consumer is still open"
    return frame, sent


async def test_slow_consumer_is_closed(live_server: StartServer, world: DocWorld) -> None:
    """A client that stops reading is closed with 1013 once its backlog passes the bound,
    after every frame queued before the close (nothing is skipped silently)."""
    import dataclasses

    settings = dataclasses.replace(
        world.settings,
        collab=dataclasses.replace(world.settings.collab, send_buffer_bytes=64 * 1024),
    )
    server = await live_server(settings)
    file_id = await world.new_file("")
    token = world.token(world.owner)
    hub = server.app.state.services.documents
    async with connect(doc_url(server, file_id, token), max_queue=1) as slow:
        await slow.recv()
        frame, sent = flood_until_slow(hub.rooms[file_id])
        received = 0
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(20):
                while True:
                    assert await slow.recv() == frame
                    received += 1
        assert slow.close_code == 1013
        assert received == sent
