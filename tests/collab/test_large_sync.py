"""A large document's initial sync: compressed (RSV1) for clients that offer
permessage-deflate, raw for those that do not, shared by joiners; keystrokes stay raw."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import struct
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from collab import protocol
from collab.hub import DocumentHub
from collab.merge import new_doc
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_for
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"


def large_text(lines: int = 4000) -> str:
    """About 300 KB of code-like lines (compresses well, as source does)."""
    return "".join(f"def handler_{i}(value, index):  # line {i}\n    return value * {i % 97}\n"
                   for i in range(lines))


def large_settings(world: DocWorld) -> DocWorld:
    collab = dataclasses.replace(
        world.settings.collab, max_document_bytes=4 << 20, deflate_min_bytes=16 << 10,
        shared_sync_min_bytes=16 << 10, shared_sync_keep_s=0.3,
    )
    return dataclasses.replace(world, settings=dataclasses.replace(world.settings, collab=collab))


@dataclass
class RawFrame:
    first: int
    payload: bytes

    @property
    def rsv1(self) -> bool:
        return bool(self.first & 0x40)

    def message(self) -> bytes:
        """The message, inflated when RSV1 is set (RFC 7692 7.2.2)."""
        if not self.rsv1:
            return self.payload
        return zlib.decompressobj(-15).decompress(self.payload + b"\x00\x00\xff\xff")


class RawClient:
    """A WebSocket client that shows each frame's first byte (RSV1) as the server sent it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 extensions: str) -> None:
        self.reader = reader
        self.writer = writer
        self.extensions = extensions

    @classmethod
    async def open(cls, server: LiveServer, file_id: uuid.UUID, token: str,
                   offer: str | None) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        head = (f"GET /ws/docs/{file_id}?token={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n")
        if offer is not None:
            head += f"Sec-WebSocket-Extensions: {offer}\r\n"
        writer.write((head + "\r\n").encode())
        response = (await reader.readuntil(b"\r\n\r\n")).decode()
        assert response.startswith("HTTP/1.1 101"), response
        extensions = ""
        for line in response.split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "sec-websocket-extensions":
                extensions = value.strip()
        return cls(reader, writer, extensions)

    def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes((0x82, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x82, 0xFE, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def frame(self) -> RawFrame:
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return RawFrame(first, await self.reader.readexactly(length))

    async def until(self, sub: int) -> RawFrame:
        """Frames until a sync message of kind ``sub``; that frame."""
        async with asyncio.timeout(10):
            while True:
                frame = await self.frame()
                if frame.first & 0x0F != 0x2:
                    continue
                parsed = protocol.parse_frame(frame.message())
                if parsed.kind == protocol.MSG_SYNC and parsed.sub == sub:
                    return frame

    async def sync_fresh(self) -> RawFrame:
        self.send(protocol.sync_step1(b"\x00"))
        return await self.until(protocol.SYNC_STEP2)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def text_of(*messages: bytes) -> str:
    doc, text = new_doc()
    for message in messages:
        doc.apply_update(protocol.parse_frame(message).payload)
    return str(text)


def hub_of(server: LiveServer) -> DocumentHub:
    hub: DocumentHub = server.app.state.services.documents
    return hub


async def test_large_sync_is_deflated_and_keystrokes_are_not(live_server: StartServer,
                                                             world: DocWorld) -> None:
    world = large_settings(world)
    server = await live_server(world.settings)
    content = large_text()
    file_id = await world.new_file(content)
    token = world.token(world.owner)
    raw = await RawClient.open(server, file_id, token, DEFLATE_OFFER)
    agent = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        assert "permessage-deflate" in raw.extensions
        # No zlib context kept between messages by either side.
        assert "server_no_context_takeover" in raw.extensions
        assert "client_no_context_takeover" in raw.extensions
        step2 = await raw.sync_fresh()
        assert step2.rsv1
        message = step2.message()
        assert len(step2.payload) * 3 < len(message)
        assert text_of(message) == content

        # The stock Node client (ws + y-websocket) negotiated deflate and syncs it too.
        await agent.wait_synced()
        assert "permessage-deflate" in await agent.call("extensions")
        assert await agent.call("sha256") == hashlib.sha256(content.encode()).hexdigest()

        # A keystroke reaches the raw client uncompressed.
        await agent.call("append", value="x")
        update = await raw.until(protocol.SYNC_UPDATE)
        assert update.first == 0x82
        assert hub_of(server).full_syncs.stats.deflated_sends == 2
    finally:
        await agent.stop()
        await raw.close()


async def test_client_without_deflate_gets_it_raw(live_server: StartServer,
                                                  world: DocWorld) -> None:
    world = large_settings(world)
    server = await live_server(world.settings)
    content = large_text()
    file_id = await world.new_file(content)
    raw = await RawClient.open(server, file_id, world.token(world.owner), None)
    try:
        assert raw.extensions == ""
        step2 = await raw.sync_fresh()
        assert step2.first == 0x82
        assert text_of(step2.payload) == content
    finally:
        await raw.close()


async def test_small_documents_are_not_compressed(live_server: StartServer,
                                                  world: DocWorld) -> None:
    world = large_settings(world)
    server = await live_server(world.settings)
    file_id = await world.new_file("small\n")
    raw = await RawClient.open(server, file_id, world.token(world.owner), DEFLATE_OFFER)
    try:
        step2 = await raw.sync_fresh()
        assert step2.first == 0x82
        assert text_of(step2.payload) == "small\n"
        assert hub_of(server).full_syncs.stats.encodings == 0
    finally:
        await raw.close()


async def test_joiners_share_one_encoding_and_late_ones_get_the_rest(
    live_server: StartServer, world: DocWorld,
) -> None:
    world = large_settings(world)
    server = await live_server(world.settings)
    content = large_text()
    file_id = await world.new_file(content)
    token = world.token(world.owner)
    hub = hub_of(server)
    offers = [DEFLATE_OFFER, DEFLATE_OFFER, None, DEFLATE_OFFER]
    clients = [await RawClient.open(server, file_id, token, offer) for offer in offers]
    try:
        # Step1 of all at once, after every one of them has joined the loaded room.
        for client in clients:
            await client.until(protocol.SYNC_STEP1)
        frames = await asyncio.gather(*(client.sync_fresh() for client in clients))
        assert [f.rsv1 for f in frames] == [True, True, False, True]
        assert all(text_of(f.message()) == content for f in frames)
        assert hub.full_syncs.stats.encodings == 1
        assert hub.full_syncs.stats.compressions == 1

        # An edit, then a late joiner: the same shared copy plus what changed since.
        clients[0].send(protocol.sync_update(edit_of(frames[0].message(), "late edit\n")))
        await clients[1].until(protocol.SYNC_UPDATE)
        late = await RawClient.open(server, file_id, token, DEFLATE_OFFER)
        clients.append(late)
        shared = await late.sync_fresh()
        rest = await late.until(protocol.SYNC_UPDATE)
        assert shared.rsv1 and shared.payload == frames[0].payload
        assert text_of(shared.message(), rest.message()) == "late edit\n" + content
        assert hub.full_syncs.stats.encodings == 1

        # Unused, the shared copy is dropped (one copy per loaded document, none when idle).
        await wait_for(lambda: hub.full_syncs.held_bytes() == 0)
    finally:
        for client in clients:
            await client.close()


def edit_of(state_message: bytes, prefix: str) -> bytes:
    """An update that inserts ``prefix`` at the start of the document in that state."""
    doc, text = new_doc()
    doc.apply_update(protocol.parse_frame(state_message).payload)
    before = doc.get_state()
    text.insert(0, prefix)
    return doc.get_update(before)
