"""Document sockets through the picows listener (server/ws/picows_docs.py, issue 21's trial).

The same checks as uvicorn's path (test_ws_bad_input.py, test_ws_transport.py) against the
second listener: stock clients co-edit and persist, refusals and bad input get their close
codes, malformed frames are refused whatever their TCP split, and the room carries on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from collab import protocol
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_for, wait_until
from tests.collab.test_ws_bad_input import (
    bad_frames_close_the_sender_only,
    close_code_after,
    flood_until_slow,
    sync_fresh,
)
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


async def picows_server(live_server: StartServer, world: DocWorld) -> tuple[LiveServer, str]:
    server = await live_server(dataclasses.replace(world.settings, picows_docs_port=0))
    return server, f"ws://127.0.0.1:{server.app.state.picows_docs.port}"


def url(base: str, file_id: object, token: str) -> str:
    return f"{base}/ws/docs/{file_id}?token={token}"


def masked(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


async def test_stock_clients_co_edit_and_persist(live_server: StartServer,
                                                 world: DocWorld) -> None:
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("hello")
    token = world.token(world.owner)
    a = await NodeAgent.start(base, file_id, token)
    b = await NodeAgent.start(base, file_id, token)
    try:
        await a.wait_synced()
        await b.wait_synced()
        await a.call("append", value=" world")
        await wait_until(lambda: _text_is(b, "hello world"))
        await wait_until(lambda: _content_is(world, file_id, "hello world"))
        assert a.close_codes() == b.close_codes() == []
    finally:
        await a.stop()
        await b.stop()


async def _text_is(agent: NodeAgent, expected: str) -> bool:
    return await agent.text() == expected


async def _content_is(world: DocWorld, file_id: object, expected: str) -> bool:
    return await world.content(file_id) == expected  # type: ignore[arg-type]


async def test_refused_connections(live_server: StartServer, world: DocWorld) -> None:
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("x")
    stranger = await world.new_user(None)
    cases = [
        (url(base, "not-a-uuid", world.token(world.owner)), 4404),
        (url(base, file_id, world.token(stranger)), 4403),
        (url(base, file_id, "garbage"), 4401),
        (f"{base}/ws/docs/{file_id}", 4401),
    ]
    for address, code in cases:
        async with connect(address) as ws:
            assert await close_code_after(ws, None) == code, address


# uvicorn's path answers a frame over the limit with 4413 (it rewrites websockets' 1009);
# picows refuses it in its parser with 1009 and no hook to choose the code.
PICOWS_CODES = {"huge frame": 1009}


async def test_bad_frames_close_the_sender_only(live_server: StartServer,
                                                world: DocWorld) -> None:
    _, base = await picows_server(live_server, world)
    await bad_frames_close_the_sender_only(base, world, PICOWS_CODES)


def with_rsv1(frame: bytes) -> bytes:
    return bytes([frame[0] | 0x40]) + frame[1:]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (Frame(Opcode.BINARY, b"unmasked").serialize(mask=False), 1002),
        (with_rsv1(masked(Opcode.BINARY, b"x")), 1002),
        (masked(Opcode.CONT, b"no start"), 1002),
        (masked(Opcode.BINARY, b"\x00", fin=False) + masked(Opcode.BINARY, b"\x00"), 1002),
        (masked(Opcode.TEXT, b"\xff\xfe"), 1007),
        (bytes([0x89, 0x80 | 126]) + (126).to_bytes(2, "big") + b"mask" + b"p" * 126, 1002),
        (bytes([0x8F, 0x80]) + b"mask", 1002),  # opcode 0xF
        (bytes([0x82, 0x80 | 127]) + (17 << 20).to_bytes(8, "big") + b"mask", 1009),
    ],
    ids=["unmasked", "rsv1", "stray-continuation", "interleaved-data", "bad-utf8",
         "long-ping", "bad-opcode", "too-large"],
)
async def test_malformed_frames_get_their_close_codes(
    live_server: StartServer, world: DocWorld, bad: bytes, code: int,
) -> None:
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("")
    async with connect(url(base, file_id, world.token(world.owner)), compression=None) as ws:
        await asyncio.wait_for(ws.recv(), 5)  # Step1: joined
        assert ws.transport is not None
        ws.transport.write(bad)
        assert await close_code_after(ws, None) == code


async def test_fragmented_message_grown_past_the_limit_closes_4413(
    live_server: StartServer, world: DocWorld,
) -> None:
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("")
    limit = world.settings.collab.max_message_bytes
    async with connect(url(base, file_id, world.token(world.owner)), compression=None) as ws:
        await asyncio.wait_for(ws.recv(), 5)
        assert ws.transport is not None
        part = b"\x00" * (limit // 2)
        ws.transport.write(masked(Opcode.BINARY, part, fin=False)
                           + masked(Opcode.CONT, part, fin=False)
                           + masked(Opcode.CONT, b"\x00\x00", fin=True))
        assert await close_code_after(ws, None) == 4413


@pytest.mark.parametrize("chunk", [1, 5, 0], ids=lambda n: f"chunk{n or 'all'}")
async def test_fragments_and_pings_in_any_tcp_split_reach_the_room(
    live_server: StartServer, world: DocWorld, chunk: int,
) -> None:
    """A fragmented update with a ping between its fragments, written in pieces."""
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("abc")
    token = world.token(world.owner)
    watcher = await NodeAgent.start(base, file_id, token)
    try:
        await watcher.wait_synced()
        async with connect(url(base, file_id, token), compression=None) as ws:
            doc, text = await sync_fresh(ws)
            before = doc.get_state()
            text += "def"
            update = protocol.sync_update(doc.get_update(before))
            cut = len(update) // 2
            stream = (masked(Opcode.BINARY, update[:cut], fin=False)
                      + masked(Opcode.PING, b"pp")
                      + masked(Opcode.CONT, update[cut:], fin=True))
            assert ws.transport is not None
            step = chunk or len(stream)
            for start in range(0, len(stream), step):
                ws.transport.write(stream[start:start + step])
                await asyncio.sleep(0)
            await wait_until(lambda: _text_is(watcher, "abcdef"))
            assert await _pong_or_frames(ws)
        assert watcher.close_codes() == []
    finally:
        await watcher.stop()


async def _pong_or_frames(ws: ClientConnection) -> bool:
    """The connection is still open and answering (a ping of ours is answered)."""
    waiter = await ws.ping()
    await asyncio.wait_for(waiter, 5)
    return True


async def test_slow_consumer_is_closed_1013(live_server: StartServer, world: DocWorld) -> None:
    settings = dataclasses.replace(
        world.settings,
        collab=dataclasses.replace(world.settings.collab, send_buffer_bytes=64 * 1024),
        picows_docs_port=0,
    )
    server = await live_server(settings)
    base = f"ws://127.0.0.1:{server.app.state.picows_docs.port}"
    file_id = await world.new_file("")
    hub = server.app.state.services.documents
    async with connect(url(base, file_id, world.token(world.owner)), max_queue=1) as slow:
        await slow.recv()
        await wait_for(lambda: file_id in hub.rooms and bool(hub.rooms[file_id].peers))
        flood_until_slow(hub.rooms[file_id])
        assert await close_code_after(slow, None) == 1013


async def test_stopping_closes_sockets_with_1012(live_server: StartServer,
                                                 world: DocWorld) -> None:
    server, base = await picows_server(live_server, world)
    file_id = await world.new_file("x")
    async with connect(url(base, file_id, world.token(world.owner))) as ws:
        await ws.recv()
        await server.stop()
        assert await close_code_after(ws, None) == 1012


async def test_a_17_mb_message_sent_whole_is_refused_with_1009(
    live_server: StartServer, world: DocWorld,
) -> None:
    """tests/server/test_ws_too_large.py's case: the client is still writing when the
    server refuses. picows closes the connection 10 ms after its close frame (no
    half-close): the code must still reach the client. uvicorn's path answers 4413."""
    _, base = await picows_server(live_server, world)
    file_id = await world.new_file("")
    ws = await connect(url(base, file_id, world.token(world.owner)), max_size=None)
    try:
        await ws.recv()
        code = await close_code_after(ws, b"\x00" * (17 * 1024 * 1024))
    finally:
        await ws.close()
    assert code == 1009


@pytest.mark.parametrize("payload", [b"\x03\xe8bye", b""], ids=["1000", "no-code"])
async def test_client_close_is_answered_and_leaves_the_room(
    live_server: StartServer, world: DocWorld, payload: bytes,
) -> None:
    server, base = await picows_server(live_server, world)
    file_id = await world.new_file("x")
    hub = server.app.state.services.documents
    async with connect(url(base, file_id, world.token(world.owner)), compression=None) as ws:
        await ws.recv()
        await wait_for(lambda: file_id in hub.rooms and bool(hub.rooms[file_id].peers))
        assert ws.transport is not None
        ws.transport.write(masked(Opcode.CLOSE, payload))
        # The answer carries a valid code: 1000 for a close that had none.
        assert await close_code_after(ws, None) == 1000
    await wait_for(lambda: file_id not in hub.rooms or not hub.rooms[file_id].peers)
