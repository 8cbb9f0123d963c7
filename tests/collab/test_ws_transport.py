"""The direct channel (server/ws_transport.py) under a real uvicorn, and the fallback without it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from collab import protocol
from server.app import create_app
from server.serving import uvicorn_options
from server.settings import Settings
from server.ws_transport import (
    DirectChannel,
    DirectWebSocketProtocol,
    binary_frame,
    direct_channel,
    frame_header,
)
from tests.collab.conftest import DocWorld
from tests.collab.test_ws_bad_input import sync_fresh
from tests.support.net import free_port, wait_http_ok


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_frame_header_matches_websockets(length: int, opcode: Opcode) -> None:
    payload = b"a" * length
    first = 0x82 if opcode is Opcode.BINARY else 0x81
    ours = frame_header(first, length) + payload
    assert ours == Frame(opcode, payload).serialize(mask=False)
    if opcode is Opcode.BINARY:
        assert binary_frame(payload) == ours
        assert binary_frame(payload) is binary_frame(payload)  # built once per message


@contextlib.asynccontextmanager
async def serve(app: Any, ws: Any, **options: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn with the WebSocket protocol ``ws`` (and other ``options``)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            ws=ws, lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class EchoApp:
    """Accepts, writes through the channel and ASGI alternately, echoes binary frames
    through a receiver, closes on the text frame "bye"."""

    def __init__(self) -> None:
        self.channels: list[DirectChannel | None] = []
        self.protocols: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        channel = direct_channel(scope)
        self.channels.append(channel)
        assert channel is not None and channel.open
        channel.send_bytes(b"one")
        await send({"type": "websocket.send", "text": "two"})
        channel.send_text("thr\u00e9e")
        channel.send_bytes(b"x" * 70000)
        assert channel.nothing_queued
        channel.set_receiver(lambda data: channel.send_bytes(b"echo:" + data))
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "bye":
                channel.close(4000, "bye now")
                assert not channel.open
                channel.send_bytes(b"after close: never sent")


async def test_direct_channel_interleaves_with_asgi_and_closes() -> None:
    app = EchoApp()
    async with serve(app, DirectWebSocketProtocol) as url, connect(url + "/x") as ws:
        assert await ws.recv() == b"one"
        assert await ws.recv() == "two"
        assert await ws.recv() == "thr\u00e9e"
        assert await ws.recv() == b"x" * 70000
        await ws.send(b"ping")
        assert await ws.recv() == b"echo:ping"
        await ws.send("bye")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4000
        assert ws.close_reason == "bye now"


async def test_handshake_objects_are_not_kept() -> None:
    """An idle socket does not hold its upgrade request and response."""
    kept: list[DirectWebSocketProtocol] = []

    class Recording(DirectWebSocketProtocol):
        def connection_made(self, transport: Any) -> None:
            kept.append(self)
            super().connection_made(transport)

    async with serve(EchoApp(), Recording) as url, connect(url + "/x") as ws:
        await ws.recv()
        assert kept and kept[0].request is None and kept[0].response is None


async def test_document_sync_without_the_direct_channel(world: DocWorld) -> None:
    """Under uvicorn's stock protocol document sockets fall back to ASGI send, same protocol."""
    file_id = await world.new_file("hello")
    token = world.token(world.owner)
    app = create_app(world.settings)
    async with serve(app, "websockets-sansio") as url:
        doc_url = f"{url}/ws/docs/{file_id}?token={token}"
        async with connect(doc_url) as a, connect(doc_url) as b:
            docs = [await sync_fresh(ws) for ws in (a, b)]
            (doc_a, text_a), (doc_b, text_b) = docs
            assert str(text_a) == str(text_b) == "hello"
            before = doc_a.get_state()
            text_a += " world"
            await a.send(protocol.sync_update(doc_a.get_update(before)))
            async with asyncio.timeout(5):
                while str(text_b) != "hello world":
                    frame = protocol.parse_frame(await b.recv())  # type: ignore[arg-type]
                    if frame.kind == protocol.MSG_SYNC and frame.sub == protocol.SYNC_UPDATE:
                        doc_b.apply_update(frame.payload)


def test_serving_options_use_the_direct_protocol(settings: Settings) -> None:
    options = uvicorn_options(settings)
    assert options["ws"] is DirectWebSocketProtocol
    assert options["ws_per_message_deflate"] is False


class DetachingApp:
    """Accepts, detaches with an echo handler, and returns: no coroutine per socket."""

    def __init__(self) -> None:
        self.frames: list[bytes | str] = []
        self.lost = 0
        self.gone = asyncio.Event()
        self.returned = asyncio.Event()
        self.channel: DirectChannel | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        channel = self.channel = direct_channel(scope)
        assert channel is not None

        def on_frame(data: bytes | str) -> None:
            self.frames.append(data)
            if data == "close please":
                channel.close(4001, "as asked")
            elif isinstance(data, bytes):
                channel.send_bytes(b"echo:" + data)

        def on_lost() -> None:
            self.lost += 1
            self.gone.set()

        assert channel.detach(on_frame, on_lost)
        self.returned.set()


@pytest.mark.parametrize("who_closes", ["client", "server"])
async def test_detached_socket_outlives_its_app(who_closes: str) -> None:
    app = DetachingApp()
    async with serve(app, DirectWebSocketProtocol) as url:
        async with connect(url + "/x") as ws:
            await asyncio.wait_for(app.returned.wait(), 5)
            await asyncio.sleep(0.05)  # the app has returned: the socket must still work
            await ws.send(b"a")
            assert await ws.recv() == b"echo:a"
            if who_closes == "server":
                await ws.send("close please")
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 4001
        await asyncio.wait_for(app.gone.wait(), 5)
        await asyncio.sleep(0.05)
        assert app.lost == 1
        expected: list[bytes | str] = [b"a"] + (["close please"] if who_closes == "server" else [])
        assert app.frames == expected
        assert app.channel is not None and not app.channel.open


def masked(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


def with_rsv1(frame: bytes) -> bytes:
    """RSV1 set: compressed, which nobody negotiated (websockets will not build it)."""
    return bytes([frame[0] | 0x40]) + frame[1:]


@pytest.mark.parametrize("chunk", [1, 3, 7, 4096, 0], ids=lambda n: f"chunk{n or 'all'}")
async def test_detached_socket_reads_frames_however_tcp_splits_them(chunk: int) -> None:
    """Data frames read by the splitter and frames websockets parses (a ping, a fragmented
    message) arrive in order, whatever the read boundaries."""
    app = DetachingApp()
    stream = b"".join([
        masked(Opcode.BINARY, b"a"),
        masked(Opcode.TEXT, "b\u00e9".encode()),
        masked(Opcode.PING, b"pp"),
        masked(Opcode.BINARY, b"c" * 70000),
        masked(Opcode.TEXT, b"he", fin=False),
        masked(Opcode.CONT, b"ll", fin=False),
        masked(Opcode.CONT, b"o", fin=True),
        masked(Opcode.BINARY, b"d" * 300),
        masked(Opcode.BINARY, b""),
    ])
    expected: list[bytes | str] = [b"a", "b\u00e9", b"c" * 70000, "hello", b"d" * 300, b""]
    via_websockets: list[str] = []

    class Counting(DirectWebSocketProtocol):
        def send_receive_event_to_app(self) -> None:
            via_websockets.append(self.curr_msg_data_type)
            super().send_receive_event_to_app()

    async with serve(app, Counting) as url, connect(url + "/x") as ws:
        await asyncio.wait_for(app.returned.wait(), 5)
        assert ws.transport is not None
        step = chunk or len(stream)
        for start in range(0, len(stream), step):
            ws.transport.write(stream[start : start + step])
            if chunk and start % (step * 64) == 0:
                await asyncio.sleep(0)  # let some pieces arrive as separate reads
        echoes = [await asyncio.wait_for(ws.recv(), 5) for _ in range(4)]
        assert echoes == [b"echo:a", b"echo:" + b"c" * 70000, b"echo:" + b"d" * 300, b"echo:"]
        assert app.frames == expected
        # Still usable afterwards; this client negotiated permessage-deflate, so its own
        # frames are compressed (RSV1) and go through websockets, between raw ones.
        await ws.send(b"z")
        ws.transport.write(masked(Opcode.BINARY, b"raw"))
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:z"
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:raw"
        await ws.send(b"z")
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:z"
        # Only the fragmented message and the compressed frames needed websockets' parser.
        assert via_websockets == ["text", "bytes", "bytes"]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (Frame(Opcode.BINARY, b"unmasked").serialize(mask=False), 1002),
        (with_rsv1(masked(Opcode.BINARY, b"x")), 1002),
        (masked(Opcode.CONT, b"no start"), 1002),
        (masked(Opcode.TEXT, b"\xff\xfe"), 1007),
        # A header announcing more than the message size limit: refused at once, 4413.
        (bytes([0x82, 0x80 | 127]) + (17 << 20).to_bytes(8, "big") + b"mask", 4413),
    ],
    ids=["unmasked", "rsv1", "stray-continuation", "bad-utf8", "too-large"],
)
async def test_detached_socket_bad_frames_get_their_close_codes(bad: bytes, code: int) -> None:
    app = DetachingApp()
    async with (
        serve(app, DirectWebSocketProtocol) as url,
        connect(url + "/x", compression=None) as ws,
    ):
        await asyncio.wait_for(app.returned.wait(), 5)
        assert ws.transport is not None
        ws.transport.write(masked(Opcode.BINARY, b"ok") + bad + masked(Opcode.BINARY, b"never"))
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:ok"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == code
        await asyncio.wait_for(app.gone.wait(), 5)
        assert app.frames == [b"ok"]
        assert app.lost == 1
