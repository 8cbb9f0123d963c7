"""The AI relay benchmark's fake OpenAI-compatible provider: one clock for every stream.

    python bench/ai_relay_provider.py PORT --deltas N --interval-ms MS

``POST /v1/chat/completions`` answers with an SSE stream whose every delta is ``<ns>``, the
provider's send time (``time.time_ns()``). The first delta of a stream goes out as soon as
its request is read; after that one ticker writes each tick's delta, with ONE send time, to
every open stream, synchronously and in alternating order. So the bench's raw stream and the
stream the app relays carry the same deltas, and the relay's overhead is measured per delta:
watcher receive time minus raw receive time of the same ``<ns>``.

A request body may carry ``"bench_deltas"`` (how many deltas that stream gets; default N).
Responses are close-delimited (``connection: close``), written straight to the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"connection: close\r\n\r\n"
)
CHUNK = (
    'data: {"model":"bench","choices":[{"index":0,"delta":{"content":"<%d>"},'
    '"finish_reason":null}]}\n\n'
)
MAX_REQUEST = 1 << 20


def tail(completion_tokens: int) -> bytes:
    end = {"model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"model": "bench", "choices": [],
             "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens}}
    return f"data: {json.dumps(end)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()


class Stream:
    __slots__ = ("remaining", "sent", "transport")

    def __init__(self, transport: asyncio.Transport, count: int) -> None:
        self.transport = transport
        self.remaining = count
        self.sent = 0

    def write_delta(self, chunk: bytes) -> None:
        self.transport.write(chunk)
        self.remaining -= 1
        self.sent += 1
        if self.remaining <= 0:
            self.transport.write(tail(self.sent))
            self.transport.close()


class Ticker:
    """Writes one delta (one send time) to every open stream per interval."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.streams: list[Stream] = []
        self._woken = asyncio.Event()
        self._ticks = 0

    def add(self, stream: Stream) -> None:
        self.streams.append(stream)
        self._woken.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.streams:
                self._woken.clear()
                await self._woken.wait()
                next_at = loop.time()
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.streams = [s for s in self.streams
                            if s.remaining > 0 and not s.transport.is_closing()]
            self._ticks += 1
            # Alternate who is written first, so neither stream is always a write behind.
            order = self.streams if self._ticks % 2 else self.streams[::-1]
            chunk = (CHUNK % time.time_ns()).encode()
            for stream in order:
                stream.write_delta(chunk)


class ProviderProtocol(asyncio.Protocol):
    """One HTTP/1.1 request per connection, answered with a close-delimited SSE stream."""

    def __init__(self, ticker: Ticker, deltas: int) -> None:
        self.ticker = ticker
        self.deltas = deltas
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answered or self.transport is None:
            return
        self.buffer += data
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            if len(self.buffer) > MAX_REQUEST:
                self.transport.close()
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) < length:
            return
        self.answered = True
        count = self.deltas
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            count = int(json.loads(body[:length]).get("bench_deltas", count))
        self.transport.write(HEAD)
        stream = Stream(self.transport, count)
        stream.write_delta((CHUNK % time.time_ns()).encode())
        if stream.remaining > 0:
            self.ticker.add(stream)


async def serve(port: int, deltas: int, interval_s: float) -> None:
    loop = asyncio.get_running_loop()
    ticker = Ticker(interval_s)
    server = await loop.create_server(
        lambda: ProviderProtocol(ticker, deltas), "127.0.0.1", port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ticking = asyncio.create_task(ticker.run())
    try:
        await stop.wait()
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.deltas, args.interval_ms / 1000))
