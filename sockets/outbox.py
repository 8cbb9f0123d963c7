"""The sending side of one accepted socket: bounded by bytes, never blocking, closed with a code.

Every socket kind (documents, the project channel, chat watchers, terminal clients) sends
through an ``Outbox``, with one policy: a frame is handed over at once (no await); the
bytes not yet taken by the client are bounded, and a frame due while the backlog is past
the bound closes the socket as a slow consumer (1013, try again later: it reconnects and
resyncs) instead of being dropped or slowing everyone. ``behind`` lets a sender that has a
better move (a terminal pauses its PTY when every client is behind) look before sending.

Two implementations, picked by ``open_outbox``:

- ``DirectOutbox``: under our uvicorn protocol (server/ws_transport.py) each frame is
  written straight to the transport, synchronously; the transport's buffer is the queue.
  This is the document path's fast path: one room broadcast is one write per peer.
- ``QueuedOutbox``: under another ASGI server, a deque (bounded by its bytes) drained by
  one writer task through ASGI ``send``.

``close(code, reason)`` sends the close frame after every frame sent before it (a
terminal's last ``disconnect`` message reaches the client); nothing sent after it goes
out. It is idempotent and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

from sockets.close_codes import GOING_AWAY, SLOW_CONSUMER

log = logging.getLogger(__name__)

WRITER_GRACE_S = 2.0
SLOW_REASON = "slow consumer"
# An ASGI send: the receiving side's ``send`` callable.
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
SlowCallback = Callable[[int], None]


def close_reason(reason: str) -> str:
    """A close frame's reason fits in 123 bytes: cut at a character boundary."""
    return reason.encode("utf-8")[:120].decode("utf-8", "ignore")


class Channel(Protocol):
    """What ``DirectOutbox`` needs of a socket's direct channel (server.ws_transport)."""

    @property
    def open(self) -> bool: ...

    @property
    def buffered(self) -> int: ...

    def send_bytes(self, data: bytes) -> None: ...

    def send_text(self, text: str) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def on_drain(self, callback: Callable[[], None] | None) -> None: ...


class Outbox(Protocol):
    """One socket's sending side, as every hub sees it."""

    @property
    def closed(self) -> bool: ...

    @property
    def buffered(self) -> int:
        """Bytes sent but not yet taken by the client."""
        ...

    @property
    def behind(self) -> bool:
        """Past the bound: the next frame would close the socket as a slow consumer."""
        ...

    def send_bytes(self, data: bytes) -> None: ...

    def send_text(self, text: str) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` when a backlog has been taken by the client (after ``behind``)."""
        ...

    async def finish(self) -> None:
        """Let a pending close go out, then stop whatever sends on the socket's behalf."""
        ...


class DirectOutbox:
    """Frames written straight to the transport; its write buffer is the bounded queue."""

    __slots__ = ("_channel", "_closed", "_limit", "on_slow")

    def __init__(self, channel: Channel, limit: int, on_slow: SlowCallback | None = None) -> None:
        self._channel = channel
        self._limit = limit
        self.on_slow = on_slow
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or not self._channel.open

    @property
    def buffered(self) -> int:
        return self._channel.buffered

    @property
    def behind(self) -> bool:
        return self._channel.buffered > self._limit

    def send_bytes(self, data: bytes) -> None:
        if self._closed:
            return
        channel = self._channel
        if channel.buffered > self._limit:
            self._slow(channel.buffered)
            return
        channel.send_bytes(data)

    def send_text(self, text: str) -> None:
        # send_bytes spells the same check out: it is the document path's hot loop.
        if not self._closed and not self.behind:
            self._channel.send_text(text)
        elif not self._closed:
            self._slow(self._channel.buffered)

    def _slow(self, backlog: int) -> None:
        if self.on_slow is not None:
            self.on_slow(backlog)
        self.close(SLOW_CONSUMER, SLOW_REASON)

    def close(self, code: int, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            self._channel.on_drain(None)
            self._channel.close(code, close_reason(reason))

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        self._channel.on_drain(callback)

    async def finish(self) -> None:
        """Nothing runs on this socket's behalf: sends happened when they were made."""


class QueuedOutbox:
    """A deque bounded by its bytes, drained by one writer task through ASGI ``send``."""

    __slots__ = (
        "_close", "_limit", "_on_drain", "_queue", "_queued_bytes", "_send", "_waiter",
        "on_slow", "writer",
    )

    def __init__(self, send: Send, limit: int, on_slow: SlowCallback | None = None) -> None:
        self._send = send
        self._limit = limit
        self.on_slow = on_slow
        self._queue: deque[dict[str, Any]] = deque()
        self._queued_bytes = 0
        # The writer's wake-up: a bare future while it waits (lighter than an Event per socket).
        self._waiter: asyncio.Future[None] | None = None
        self._close: tuple[int, str] | None = None
        self._on_drain: Callable[[], None] | None = None
        self.writer: asyncio.Task[None] = asyncio.create_task(self._write(), name="ws-writer")

    @property
    def closed(self) -> bool:
        return self._close is not None

    @property
    def buffered(self) -> int:
        return self._queued_bytes

    @property
    def behind(self) -> bool:
        return self._queued_bytes > self._limit

    def send_bytes(self, data: bytes) -> None:
        self._put({"type": "websocket.send", "bytes": data}, len(data))

    def send_text(self, text: str) -> None:
        self._put({"type": "websocket.send", "text": text}, len(text))

    def _put(self, message: dict[str, Any], size: int) -> None:
        if self._close is not None:
            return
        if self._queued_bytes > self._limit:
            if self.on_slow is not None:
                self.on_slow(self._queued_bytes)
            self.close(SLOW_CONSUMER, SLOW_REASON)
            return
        self._queue.append(message)
        self._queued_bytes += size
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str = "") -> None:
        if self._close is None:
            self._close = (code, close_reason(reason))
            self._on_drain = None
            self._wake()

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        self._on_drain = callback

    async def _write(self) -> None:
        send = self._send
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue and self._close is None:
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
                was_behind = self.behind
                while queue:
                    message = queue.popleft()
                    data = message.get("bytes")
                    self._queued_bytes -= len(data if data is not None else message["text"])
                    await send(message)
                if was_behind and self._on_drain is not None:
                    self._on_drain()
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
        except Exception as exc:  # the client went away while we were sending
            log.debug("socket writer stopped: %r", exc)
            self._close = self._close or (GOING_AWAY, "gone")

    async def finish(self) -> None:
        """Let the writer flush a pending close (briefly), then stop it."""
        writer = self.writer
        if writer.done():
            return
        if self._close is None:
            writer.cancel()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), WRITER_GRACE_S)
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


# The scope extension under which our uvicorn protocol (server/ws_transport.py) puts an
# accepted socket's direct channel.
DIRECT_EXTENSION = "icreate.direct"


def direct_channel(scope: Mapping[str, Any]) -> Channel | None:
    """The socket's direct channel, when the server runs our uvicorn protocol."""
    extensions = scope.get("extensions") or {}
    channel: Channel | None = extensions.get(DIRECT_EXTENSION)
    return channel


def open_outbox(
    scope: Mapping[str, Any], send: Send, limit: int, on_slow: SlowCallback | None = None
) -> DirectOutbox | QueuedOutbox:
    """The outbox of an accepted socket: direct when the transport allows it, else queued."""
    channel = direct_channel(scope)
    if channel is not None:
        return DirectOutbox(channel, limit, on_slow)
    return QueuedOutbox(send, limit, on_slow)
