"""uvicorn's WebSocket protocol plus a direct channel for the sockets that carry the load.

Why over 400 lines: it is one subclass of uvicorn's protocol whose overrides depend on each
other and on that uvicorn version's internals; splitting them would hide which internals are
relied on.

Every frame sent through ASGI costs a ``send`` coroutine, an ``Event`` wait, a websockets
``Frame`` object, its serialisation and a join, per socket: a document update typed by one
client and delivered to four others paid that four times, and it was most of the server's
CPU per delivered update. A server frame is unmasked, so its bytes are the same for every
socket; the direct channel writes them straight to the transport, synchronously, in order
with everything else the protocol writes (each write is one whole frame).

The handshake, pings, the close handshake and every incoming frame stay uvicorn's and
websockets'. An endpoint finds the channel in ``scope["extensions"]`` once it has accepted;
under another ASGI server the extension is absent and the endpoint uses plain ``send``.

Incoming binary frames can be handed to a synchronous receiver instead of the ASGI queue
(no queue hop, no task wake-up and no pause/resume of reading per frame).

A detached socket's whole, unfragmented data frames are read here too (``_split``): a
header, a mask and one C unmasking call, where websockets' generator parser built a
``Frame`` through several generator hops (about a fifth of the CPU per received edit).
Everything else (control frames, fragments, oversize or malformed frames, whatever
arrives once closing starts) still goes to websockets, in order: the splitter follows
frame boundaries from the handshake on and only ever hands websockets whole frames or the
rest of the frame it is in, so its parser stays where it would have been.

An incoming message over the size limit (uvicorn's ``ws_max_size``, set from
``WS_MAX_MESSAGE_BYTES``), announced in one frame's header or grown over fragments, closes
the socket with 4413 (websockets' own code is 1009), on every socket kind; the connection
is half-closed so the client reads that close frame, and what it was still sending is
discarded until the close timeout ends the connection.

This subclasses uvicorn's ``WebSocketsSansIOProtocol`` and reads its state attributes, so
uvicorn is pinned to a minor version in pyproject.toml; tests/collab/test_ws_transport.py
checks what is relied on.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode
from websockets.protocol import Protocol, State

from sockets.close_codes import INTERNAL_ERROR, INVALID_DATA, TOO_LARGE
from sockets.deflate import DEFAULT_MIN_BYTES, LargeMessageDeflateFactory, negotiated_bits
from sockets.outbox import DIRECT_EXTENSION

try:  # websockets' C unmasking; its pure-Python one where the extension is not built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask


_BINARY = 0x82  # FIN + binary
_BINARY_DEFLATED = 0xC2  # FIN + RSV1 (permessage-deflate) + binary
_TEXT = 0x81  # FIN + text
_MASK_BIT = 0x80
_U16 = struct.Struct("!BBH")
_U64 = struct.Struct("!BBQ")
_NO_LIMIT = 1 << 62

Receiver = Callable[[bytes], None]
FrameHandler = Callable[[bytes | str], None]


def frame_header(first: int, length: int) -> bytes:
    """The header of an unmasked, unfragmented server frame of ``length`` payload bytes."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _U16.pack(first, 126, length)
    return _U64.pack(first, 127, length)


_last_payload: bytes | None = None
_last_frame = b""


def binary_frame(data: bytes) -> bytes:
    """The whole server frame (header + ``data``) of one binary message.

    A broadcast sends the same bytes object to every peer of a room in a row: the frame is
    built once for all of them (one entry of cache, by identity).
    """
    global _last_payload, _last_frame
    if data is not _last_payload:
        _last_frame = frame_header(_BINARY, len(data)) + data
        _last_payload = data
    return _last_frame


class _MessageQueue:
    """The part of ``asyncio.Queue`` uvicorn uses (one consumer: the app's ``receive``).

    ``asyncio.Queue`` allocates three deques and an ``Event`` (another deque), about
    3 KB, for a queue that on a document socket only ever holds the final disconnect.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _WritableFlag:
    """The part of ``asyncio.Event`` uvicorn uses for its ``writable`` flag, without a deque."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return True


class DirectChannel:
    """Synchronous sends (and an optional synchronous receiver) for one accepted socket."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        """Accepted, not closing, not gone: frames written now reach the client."""
        p = self._protocol
        return p.handshake_complete and not p.close_sent and not p.disconnected

    @property
    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (a slow reader's backlog)."""
        return self._protocol.transport.get_write_buffer_size()

    def send_bytes(self, data: bytes) -> None:
        if self.open:
            self._protocol.transport.write(binary_frame(data))

    @property
    def deflate_bits(self) -> int | None:
        """permessage-deflate's window bits for what this server sends, if negotiated."""
        return negotiated_bits(self._protocol.conn.extensions)

    def send_large(self, data: bytes, deflated: bool = False) -> None:
        """One large binary message: header and payload written apart (no joined copy of
        megabytes, nothing cached); ``deflated``: ``data`` is sockets.deflate's
        ``deflate_message`` output, sent with RSV1 set."""
        if self.open:
            transport = self._protocol.transport
            transport.write(frame_header(_BINARY_DEFLATED if deflated else _BINARY, len(data)))
            transport.write(data)

    def send_text(self, text: str) -> None:
        if self.open:
            data = text.encode()
            self._protocol.transport.write(frame_header(_TEXT, len(data)) + data)

    def close(self, code: int, reason: str = "") -> None:
        """Start the close handshake now; the ASGI side sees ``websocket.disconnect``."""
        self._protocol.close_direct(code, reason)

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` when the transport's buffer has drained (``resume_writing``)."""
        self._protocol.on_drain = callback

    @property
    def nothing_queued(self) -> bool:
        """No received message waits in the ASGI queue (safe to switch to a receiver)."""
        return self._protocol.queue.empty()

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Hand incoming binary frames to ``receiver`` (synchronously) instead of ASGI."""
        self._protocol.receiver = receiver

    def detach(self, on_frame: FrameHandler, on_lost: Callable[[], None]) -> bool:
        """Let the socket live on without its ASGI coroutine (no task per idle socket).

        From now on every data frame goes to ``on_frame`` (text frames as ``str``) and
        ``on_lost`` runs once when the connection is gone, however it ends; the app
        returns right after and the connection stays open. Call it only when
        ``nothing_queued``. False (nothing changed) if the connection is already closing.
        """
        return self._protocol.detach(on_frame, on_lost)


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O protocol; each accepted socket's scope carries a ``DirectChannel``."""

    # permessage-deflate for messages of at least this many bytes (0: not offered);
    # ``with_deflate`` makes the subclass the server runs (sockets/deflate.py).
    deflate_min_bytes = DEFAULT_MIN_BYTES

    receiver: Receiver | None = None
    detached = False
    on_frame: FrameHandler | None = None
    on_lost: Callable[[], None] | None = None
    on_drain: Callable[[], None] | None = None
    # Frame splitting (see the module docstring): on from the handshake's end while the
    # connection is open; bytes of a frame not yet whole that nobody has parsed; bytes of
    # the current frame still owed to websockets' parser; the largest frame read here.
    _splitting = False
    _held: list[bytes] | None = None
    _held_len = 0
    _need = 0
    _owed = 0
    _limit = _NO_LIMIT
    # Bytes arrived since the keepalive timer was last set (see send_keepalive_ping).
    _heard = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per-socket memory matters with thousands of idle editors.
        self.queue = _MessageQueue()  # type: ignore[assignment]
        self.writable = _WritableFlag()  # type: ignore[assignment]
        self.conn.fail = self._fail  # type: ignore[method-assign]
        if self.deflate_min_bytes > 0:
            # uvicorn's own deflate (ws_per_message_deflate) stays off: it keeps a zlib
            # context per socket and compresses every frame.
            self.conn.available_extensions = [LargeMessageDeflateFactory(self.deflate_min_bytes)]

    def _fail(self, code: int, reason: str = "") -> None:
        """websockets' ``fail``, with this service's close code for an oversized message."""
        Protocol.fail(self.conn, TOO_LARGE if code == CloseCode.MESSAGE_TOO_BIG else code, reason)

    def handle_parser_exception(self) -> None:
        """uvicorn's, except that the connection is half-closed rather than closed at once.

        Closing a socket with unread bytes (the rest of an oversized message) resets it,
        and the client may lose the close frame with its code; the parser now discards
        what arrives until the client closes or the close timeout does.
        """
        if self.close_sent:
            self.conn.data_to_send()
            return
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": close.code,
                               "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][DIRECT_EXTENSION] = DirectChannel(self)

    def start_keepalive(self) -> None:
        # Called once the handshake response is written: the upgrade request and the
        # response (headers included) are never read again, so a long-lived idle socket
        # does not keep them. websockets' handshake parser keeps the request in its frame
        # for the life of the connection; a fresh frame parser (the one it delegates to)
        # takes over while nothing is buffered, i.e. between frames.
        super().start_keepalive()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        conn = self.conn
        if conn.state is State.OPEN and not conn.reader.buffer:
            conn.parser = Protocol.parse(conn)
            next(conn.parser)
            # A fresh parser and nothing buffered: a frame boundary to split from.
            limits = [n for n in (conn.max_message_size, conn.max_fragment_size) if n is not None]
            self._limit = min(limits, default=_NO_LIMIT)
            self._splitting = True

    def send_keepalive_ping(self) -> None:
        # A socket that sent us something during the interval is alive: no ping this time
        # (a ping and its pong cost both ends a frame each, and idle editors renew their
        # awareness every 15 s, inside the 20 s interval). A silent one is pinged as usual
        # and closed when its pong does not come in time.
        if self._heard:
            self._heard = False
            self.ping_timer = None
            self.schedule_ping()
            return
        super().send_keepalive_ping()

    def handle_pong(self, event: Any) -> None:
        super().handle_pong(event)
        self._heard = False  # a pong alone does not spare the next ping

    def data_received(self, data: bytes) -> None:
        self._heard = True
        held = self._held
        if held is not None:
            held.append(data)
            self._held_len += len(data)
            if self._splitting and self._held_len < self._need:
                return
            data = b"".join(held)
            self._held = None
        if self._splitting:
            self._split(data)
        else:
            super().data_received(data)

    def _split(self, data: bytes) -> None:
        """Read the whole data frames a detached socket's handler takes; pass the rest on."""
        pos, end = 0, len(data)
        conn = self.conn
        while pos < end:
            owed = self._owed
            if owed:
                stop = end if end - pos <= owed else pos + owed
                self._owed = owed - (stop - pos)
                super().data_received(data if pos == 0 and stop == end else data[pos:stop])
                pos = stop
                continue
            if self.close_sent or conn.state is not State.OPEN or conn.parser_exc is not None:
                # Closing: websockets' parser (at a boundary now) takes everything from here.
                self._splitting = False
                if pos < end:
                    super().data_received(data[pos:])
                return
            if end - pos < 2:
                self._hold(data[pos:], 2)
                return
            first = data[pos]
            second = data[pos + 1]
            length = second & 0x7F
            head = 2 if length < 126 else 4 if length == 126 else 10
            if second & _MASK_BIT:
                head += 4
            if end - pos < head:
                self._hold(data[pos:], head)
                return
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if not (
                (first == _BINARY or first == _TEXT)
                and second & _MASK_BIT
                and length <= self._limit
                and self.detached
                and self.on_frame is not None
                and conn.current_size is None
            ):
                self._owed = head + length  # websockets' (and its errors' and close codes')
                continue
            stop = pos + head + length
            if stop > end:
                self._hold(data[pos:], head + length)
                return
            payload = apply_mask(data[pos + head : stop], data[pos + head - 4 : pos + head])
            pos = stop
            self._dispatch(payload, first == _TEXT)

    def _hold(self, rest: bytes, need: int) -> None:
        """Keep the start of a frame until ``need`` bytes of it are here."""
        self._held = [rest]
        self._held_len = len(rest)
        self._need = need

    def send_receive_event_to_app(self) -> None:
        on_frame = self.on_frame if self.detached else self.receiver
        text = self.curr_msg_data_type != "bytes"
        if on_frame is None or self.close_sent or (text and not self.detached):
            super().send_receive_event_to_app()
            return
        frames = self.frames
        self.frames = []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if text:
            self._dispatch(data, True)
            return
        try:
            on_frame(data)
        except Exception:
            self.logger.exception("WebSocket frame handler failed")
            self.close_direct(INTERNAL_ERROR, "internal error")

    def _dispatch(self, data: bytes, text: bool) -> None:
        """One whole message of a detached socket to its handler."""
        on_frame = self.on_frame
        assert on_frame is not None
        try:
            if not text:
                on_frame(data)
                return
            try:
                # uvicorn's own check of a text frame's UTF-8 happens on the ASGI path.
                decoded = data.decode()
            except UnicodeDecodeError:
                self.close_direct(INVALID_DATA, "invalid UTF-8")
                return
            on_frame(decoded)
        except Exception:
            self.logger.exception("WebSocket frame handler failed")
            self.close_direct(INTERNAL_ERROR, "internal error")

    def detach(self, on_frame: FrameHandler, on_lost: Callable[[], None]) -> bool:
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return False
        self.detached = True
        self.on_frame = on_frame
        self.on_lost = on_lost
        return True

    async def run_asgi(self) -> None:
        # uvicorn's, except that a detached socket stays open when the app returns.
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.detached:
            # Only the ASGI side reads the scope (logging, the app): a detached socket
            # does not need it any more.
            self.scope = None  # type: ignore[assignment]
        elif self.close_timer is None:
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        on_drain = self.on_drain
        if on_drain is not None:
            try:
                on_drain()
            except Exception:
                self.logger.exception("WebSocket drain handler failed")

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_drain = None
        self.receiver = None
        self.on_frame = None
        on_lost, self.on_lost = self.on_lost, None
        super().connection_lost(exc)
        if on_lost is not None:
            try:
                on_lost()
            except Exception:
                self.logger.exception("WebSocket close handler failed")

    def close_direct(self, code: int, reason: str) -> None:
        """What ASGI ``websocket.close`` does after the handshake, without a coroutine."""
        if self.close_sent or self.disconnected or not self.handshake_complete:
            return
        self.receiver = None
        self.on_frame = None
        if self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)


def with_deflate(min_bytes: int) -> type[DirectWebSocketProtocol]:
    """The protocol class with permessage-deflate from ``min_bytes`` (0: not offered)."""
    if min_bytes == DirectWebSocketProtocol.deflate_min_bytes:
        return DirectWebSocketProtocol
    return type("DirectWebSocketProtocol", (DirectWebSocketProtocol,),
                {"deflate_min_bytes": min_bytes})


def direct_channel(scope: Mapping[str, Any]) -> DirectChannel | None:
    """The socket's direct channel, when the server runs ``DirectWebSocketProtocol``."""
    extensions = scope.get("extensions") or {}
    channel = extensions.get(DIRECT_EXTENSION)
    return channel if isinstance(channel, DirectChannel) else None
