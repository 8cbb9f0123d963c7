"""The AI relay benchmark's floor: the least a Python relay can do, under the same pinning.

    python bench/ai_relay_floor.py PORT PROVIDER_URL

A bare uvloop server speaking WebSocket (handshake and incoming frames by the
``websockets`` sans-I/O server): the first text frame from any socket starts one provider
stream, whose SSE events are parsed, re-encoded as the app's ``delta`` frames (one JSON
text, framed once) and written to every open socket's transport; ``[DONE]`` becomes a
``done`` frame. No database, no authentication, no framework. What it adds over the raw
stream is what this machine charges for one more process hop (waking the relay's core,
reading, writing), so the app's overhead can be read against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import cast
from urllib.parse import urlsplit

import uvloop
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

REQUEST = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "floor"}],
                      "stream": True, "stream_options": {"include_usage": True}}).encode()


def text_frame(text: str) -> bytes:
    data = text.encode()
    length = len(data)
    if length < 126:
        return bytes((0x81, length)) + data
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + data


class Relay:
    def __init__(self, provider: str) -> None:
        parts = urlsplit(provider)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sockets: set[Socket] = set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run())

    def broadcast(self, frame: bytes) -> None:
        for sock in tuple(self.sockets):
            if not sock.transport.is_closing():
                sock.transport.write(frame)

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(REQUEST)}\r\n\r\n"
            .encode() + REQUEST
        )
        buffer = b""
        seq = 0
        headers_done = False
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                buffer += data
                if not headers_done:
                    head, sep, buffer = buffer.partition(b"\r\n\r\n")
                    if not sep:
                        buffer = head
                        continue
                    headers_done = True
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    payload = event.removeprefix(b"data: ").strip()
                    if payload == b"[DONE]":
                        done = json.dumps({"type": "done"}, separators=(",", ":"))
                        self.broadcast(text_frame(done))
                        return
                    for choice in json.loads(payload).get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            seq += 1
                            self.broadcast(text_frame(json.dumps(
                                {"type": "delta", "message_id": "floor", "seq": seq,
                                 "text": text}, separators=(",", ":"))))
        finally:
            writer.close()


class Socket(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.ws = ServerProtocol(max_size=None)
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self.ws.send_response(self.ws.accept(event))
                self.relay.sockets.add(self)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.relay.start()
        out = self.ws.data_to_send()
        if out:
            self.transport.write(b"".join(out))
        if self.ws.close_expected():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.sockets.discard(self)


async def serve(port: int, provider: str) -> None:
    loop = asyncio.get_running_loop()
    relay = Relay(provider)
    server = await loop.create_server(lambda: Socket(relay), "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if relay.task is not None:
        relay.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await relay.task


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))
