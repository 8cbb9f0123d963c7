"""The AI relay benchmark's client: every watcher socket and the raw provider stream in one
process, each byte stamped with the kernel's receive time.

    python bench/ai_relay_client.py WS_URL PROVIDER_URL CONVERSATION TOKEN[,TOKEN...] DELTAS

Connects one WebSocket per token (the stock handshake and frames of the ``websockets``
sans-I/O client; no compression offered), prints ``ready``, waits for ``go`` on stdin,
then at the same instant asks the provider for a raw stream and sends the conversation a
user message (from the first socket). It reads until every watcher has its ``done``.

Latency is taken from the bytes as they arrive, not from the time this process gets around
to them: every socket has ``SO_TIMESTAMPNS`` on, so each ``recvmsg`` reports when the kernel
received the data. Nothing is decoded while the stream runs: afterwards the ``<ns>`` send
times of the provider are found in each socket's bytes and paired with the receive time of
the read that completed them. A busy or descheduled client therefore does not add to the
measured latency (it could only merge reads, which would count against the relay).
Prints one JSON object: the raw stream's and each watcher's ``[send_ns, receive_ns]`` pairs.
"""

from __future__ import annotations

import bisect
import json
import re
import selectors
import socket
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

# Linux: SO_TIMESTAMPNS == SCM_TIMESTAMPNS (the stdlib does not export it).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CMSG_SIZE = socket.CMSG_SPACE(16)
TIMESPEC = struct.Struct("qq")
STAMP = re.compile(rb"<(\d{16,20})>")
DONE = b'{"type":"done"'
ERROR = b'{"type":"error"'
RAW_DONE = b"[DONE]"
RAW_SLACK = 200  # the raw stream runs this many deltas longer than the relayed one


class Reader:
    """One socket's bytes, in order, with the kernel receive time of each read."""

    def __init__(self, sock: socket.socket, end: tuple[bytes, ...]) -> None:
        self.sock = sock
        self.end = end
        self.chunks: list[bytes] = []
        self.times: list[int] = []
        self.done = False
        self._tail = b""

    def read(self) -> None:
        try:
            data, ancillary, _flags, _addr = self.sock.recvmsg(1 << 16, CMSG_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.done = True
            return
        if not data:
            self.done = True
            return
        received = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = TIMESPEC.unpack(payload[: TIMESPEC.size])
                received = seconds * 1_000_000_000 + nanos
        self.chunks.append(data)
        self.times.append(received or time.time_ns())
        window = self._tail + data
        if any(marker in window for marker in self.end):
            self.done = True
        self._tail = window[-32:]

    def samples(self, cut: bytes | None) -> tuple[list[list[int]], int]:
        """``[send_ns, receive_ns]`` of every stamp before ``cut``; and the delta frames."""
        data = b"".join(self.chunks)
        ends: list[int] = []
        size = 0
        for chunk in self.chunks:
            size += len(chunk)
            ends.append(size)
        limit = data.find(cut) if cut is not None else -1
        if limit < 0:
            limit = len(data)
        pairs = [
            [int(match.group(1)), self.times[bisect.bisect_left(ends, match.end())]]
            for match in STAMP.finditer(data, 0, limit)
        ]
        return pairs, data.count(b'"type":"delta"', 0, limit)

    @property
    def failed(self) -> bool:
        return any(ERROR in chunk for chunk in self.chunks)


def stamped_socket(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def open_watcher(url: str) -> tuple[socket.socket, ClientProtocol]:
    uri = parse_uri(url)
    protocol = ClientProtocol(uri, max_size=None)
    sock = stamped_socket(uri.host, uri.port)
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError(f"{url}: closed during the handshake")
        protocol.receive_data(data)
    if protocol.handshake_exc is not None:
        raise protocol.handshake_exc
    return sock, protocol


def raw_request(provider: str, deltas: int) -> bytes:
    body = json.dumps({
        "model": "bench", "messages": [{"role": "user", "content": "raw"}], "stream": True,
        "stream_options": {"include_usage": True}, "bench_deltas": deltas + RAW_SLACK,
    }).encode()
    host = urlsplit(provider).netloc
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


def run(ws_url: str, provider: str, conversation: str, tokens: list[str], deltas: int) -> None:
    watchers = [open_watcher(f"{ws_url}/ws/conversations/{conversation}?token={t}")
                for t in tokens]
    parts = urlsplit(provider)
    raw_sock = stamped_socket(parts.hostname or "127.0.0.1", parts.port or 80)
    request = raw_request(provider, deltas)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    raw_asked = time.time_ns()
    raw_sock.sendall(request)
    first_sock, first_protocol = watchers[0]
    first_protocol.send_text(json.dumps({"type": "user_message", "content": "go"}).encode())
    relay_asked = time.time_ns()
    first_sock.sendall(b"".join(first_protocol.data_to_send()))

    selector = selectors.DefaultSelector()
    raw = Reader(raw_sock, (RAW_DONE,))
    readers = [Reader(sock, (DONE, ERROR)) for sock, _ in watchers]
    for reader in (raw, *readers):
        reader.sock.setblocking(False)
        selector.register(reader.sock, selectors.EVENT_READ, reader)
    deadline = time.monotonic() + 60 + deltas * 0.05
    while not all(r.done for r in readers) and time.monotonic() < deadline:
        for key, _ in selector.select(0.5):
            ready: Reader = key.data
            ready.read()
            if ready.done:
                selector.unregister(ready.sock)
    selector.close()
    for sock, protocol in watchers:
        protocol.send_close(1000)
        try:
            sock.setblocking(True)
            sock.sendall(b"".join(protocol.data_to_send()))
        except OSError:
            pass
        sock.close()
    raw_sock.close()

    raw_pairs, _ = raw.samples(None)
    report: dict[str, Any] = {
        "raw_asked_ns": raw_asked,
        "relay_asked_ns": relay_asked,
        "raw": raw_pairs,
        "watchers": [],
    }
    for reader in readers:
        pairs, frames = reader.samples(DONE)
        report["watchers"].append({
            "pairs": pairs, "frames": frames, "done": reader.done, "failed": reader.failed,
        })
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    ws, prov, conv, joined, count = sys.argv[1:6]
    run(ws, prov, conv, joined.split(","), int(count))
