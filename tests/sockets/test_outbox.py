"""The socket outbox (sockets/outbox.py) under a real uvicorn: direct to the transport with
our protocol, a queue and a writer with uvicorn's own. Both bound the unsent bytes, close a
slow consumer with 1013, and send a close after what was sent before it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import sockets.outbox as outbox_module
from server.ws_transport import DirectWebSocketProtocol
from sockets.close_codes import SLOW_CONSUMER
from sockets.outbox import DirectOutbox, QueuedOutbox, open_outbox
from sockets.receive import messages
from tests.collab.node_agent import wait_for
from tests.collab.test_ws_transport import serve

LIMIT = 256 * 1024
CHUNK = b"x" * 16384

PROTOCOLS = {"direct": DirectWebSocketProtocol, "queued": "websockets-sansio"}


class OutboxApp:
    """``/flood``: sends CHUNKs until the outbox closes itself; ``/bye``: three frames and
    a close with 4000; ``/echo``: echoes text through the receive loop."""

    def __init__(self) -> None:
        self.outboxes: list[DirectOutbox | QueuedOutbox] = []
        self.slow: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        outbox = open_outbox(scope, send, LIMIT, self.slow.append)
        self.outboxes.append(outbox)
        path = scope["path"]
        if path == "/flood":
            while not outbox.closed:
                outbox.send_bytes(CHUNK)
                assert outbox.buffered <= LIMIT + len(CHUNK) + 64
                await asyncio.sleep(0)
        elif path == "/bye":
            for text in ("a", "b", "c"):
                outbox.send_text(text)
            outbox.close(4000, "bye")
        else:
            async for message in messages(receive):
                outbox.send_text(f"echo {message!r}")
        await outbox.finish()


@pytest.mark.parametrize("kind", ["direct", "queued"])
async def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queued writer has WRITER_GRACE_S to flush the backlog and the close once the app
    # is done; on a loaded machine the client here may take longer to read the backlog,
    # and the test is about the close code, not about that grace.
    monkeypatch.setattr(outbox_module, "WRITER_GRACE_S", 30.0)
    app = OutboxApp()
    async with serve(app, PROTOCOLS[kind]) as url:
        # max_queue=1 and a small read buffer: the client stops taking data almost at once.
        async with connect(f"{url}/flood", max_queue=1, max_size=None) as client:
            await wait_for(lambda: bool(app.slow), 20)
            (outbox,) = app.outboxes
            assert isinstance(outbox, DirectOutbox if kind == "direct" else QueuedOutbox)
            assert app.slow[0] > LIMIT
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(client.recv(), 20)
            assert client.close_code == SLOW_CONSUMER


@pytest.mark.parametrize("kind", ["direct", "queued"])
async def test_close_follows_what_was_sent_and_the_loop_reads_every_message(kind: str) -> None:
    app = OutboxApp()
    async with serve(app, PROTOCOLS[kind]) as url:
        async with connect(f"{url}/bye") as client:
            received = [await client.recv() for _ in range(3)]
            with pytest.raises(ConnectionClosed):
                await client.recv()
        assert received == ["a", "b", "c"]
        assert client.close_code == 4000 and client.close_reason == "bye"
        async with connect(f"{url}/echo") as client:
            await client.send("hi")
            await client.send(b"\x01")
            assert await client.recv() == "echo 'hi'"
            assert await client.recv() == "echo b'\\x01'"
