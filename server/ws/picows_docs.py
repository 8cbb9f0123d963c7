"""``/ws/docs/{file_id}?token=JWT`` on a second listener served by picows (issue 21's trial).

Off unless ``DOC_PICOWS_PORT`` is set: production serves document sockets through uvicorn
(server/ws_transport.py). This listener feeds the same hub entry point as that path's
detached sockets (``_on_frame`` -> ``DocumentHub.receive``) and sends through the same
``DirectOutbox``, so bench/ can measure what the transport alone costs (bench/README.md,
"Issue 21: transports").

picows is a frame-level library: it parses headers, unmasks, checks opcodes, control-frame
sizes and masking, answers pings and refuses a frame over ``max_frame_size`` with 1009. What
a message-level library does besides is done here, with the close codes uvicorn's path uses:
reserved bits (nothing is negotiated) and a stray or interleaved continuation get 1002, a
fragmented message growing past the limit 4413, invalid UTF-8 in a text message 1007.

Its connection factory is synchronous, so the handshake is always accepted; the token and
the file's access are checked right after, and a refusal is a close code, as on uvicorn's
path (server/ws_auth.py accepts before refusing too). Frames that arrive meanwhile wait, in
order, until the socket has joined its room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from collab import metrics
from collab.hub import DocumentHub
from collab.room import Room
from server.auth.tokens import Principal, TokenError, verify_access_token
from server.services import Services
from server.ws.docs import DirectPeer, admit, follow_role, identify, join_room, on_frame
from server.ws_auth import origin_allowed
from server.ws_transport import binary_frame
from sockets.close_codes import FORBIDDEN, INVALID_DATA, TOO_LARGE, UNAUTHENTICATED

log = logging.getLogger(__name__)

DOCS_PREFIX = "/ws/docs/"
PROTOCOL_ERROR = 1002
CLOSE_TIMEOUT_S = 10.0


class PicowsChannel:
    """``sockets.outbox.Channel`` over a picows transport.

    A broadcast's frame is built once for all its peers and written to the socket as is
    (server frames are unmasked, so the bytes are the same for every peer), as uvicorn's
    direct channel does; ``WSTransport.send`` would frame and copy it again per peer.
    """

    __slots__ = ("_closing", "_listener", "_raw", "_transport", "_write")

    def __init__(self, transport: WSTransport, listener: DocListener) -> None:
        self._transport = transport
        self._listener = listener
        self._closing = False
        self._raw = transport.underlying_transport
        self._write = self._raw.write

    @property
    def open(self) -> bool:
        t = self._transport
        return not (self._closing or t.is_close_frame_sent or t.is_disconnected)

    @property
    def buffered(self) -> int:
        size: int = self._raw.get_write_buffer_size()
        return size

    def send_bytes(self, data: bytes) -> None:
        if self.open:
            self._write(binary_frame(data))

    def send_text(self, text: str) -> None:
        if self.open:
            self._transport.send(WSMsgType.TEXT, text.encode())

    def close(self, code: int, reason: str = "") -> None:
        """Send the close frame; the connection ends on the client's answer or a timeout."""
        if self._closing:
            return
        self._closing = True
        self._listener.closing(code, reason)

    def on_drain(self, callback: Callable[[], None] | None) -> None:
        self._listener.on_drain = callback


class DocListener(WSListener):
    """One document socket: message assembly, then the hub (after ``_open`` has joined)."""

    def __init__(self, server: PicowsDocuments, file_id: str, token: str | None,
                 origin: str | None) -> None:
        super().__init__()
        self._server = server
        self._file_id = file_id
        self._token = token
        self._origin = origin
        self._limit = server.services.settings.collab.max_message_bytes
        self.transport: WSTransport | None = None
        self.on_drain: Callable[[], None] | None = None
        self._parts: list[bytes] | None = None  # a fragmented message being assembled
        self._parts_text = False
        self._parts_len = 0
        self._waiting: list[bytes | str] | None = []  # frames before the room is joined
        self._deliver: Callable[[bytes | str], None] | None = None
        self._gone: Callable[[], None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # -- picows callbacks ---------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._server.spawn(self._open())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:  # echo the code (1005 is never sent)
                code = frame.get_close_code()
                transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code)
            transport.disconnect()
            return
        if kind == WSMsgType.PONG or transport.is_close_frame_sent:
            return  # closing: what the client still sends is discarded
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            raise WSProtocolError(PROTOCOL_ERROR, "reserved bits set")
        if kind == WSMsgType.CONTINUATION:
            if self._parts is None:
                raise WSProtocolError(PROTOCOL_ERROR, "continuation without a start")
            self._add_part(frame)
            if frame.fin:
                data = b"".join(self._parts)
                self._parts = None
                self._message(data, self._parts_text)
            return
        if self._parts is not None:
            raise WSProtocolError(PROTOCOL_ERROR, "data frame inside a fragmented message")
        text = kind == WSMsgType.TEXT
        if frame.fin:
            self._message(frame.get_payload_as_bytes(), text)
            return
        self._parts, self._parts_text, self._parts_len = [], text, 0
        self._add_part(frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._deliver = None
        self.on_drain = None
        if self._close_timer is not None:
            self._close_timer.cancel()
        # A socket still opening is not cancelled (that could leave its peer in a room it
        # joined): ``_open`` sees the channel closed once it has joined, and leaves.
        gone, self._gone = self._gone, None
        if gone is not None:
            gone()

    def resume_writing(self) -> None:
        on_drain = self.on_drain
        if on_drain is not None:
            on_drain()

    # -- messages -----------------------------------------------------------------------

    def _add_part(self, frame: WSFrame) -> None:
        assert self._parts is not None
        self._parts_len += frame.payload_size
        if self._parts_len > self._limit:
            raise WSProtocolError(TOO_LARGE, "message too big")
        self._parts.append(frame.get_payload_as_bytes())

    def _message(self, data: bytes, text: bool) -> None:
        message: bytes | str = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                raise WSProtocolError(INVALID_DATA, "invalid UTF-8") from None
        deliver = self._deliver
        if deliver is not None:
            deliver(message)
        elif self._waiting is not None:
            self._waiting.append(message)

    def closing(self, code: int, reason: str) -> None:
        """Our close: the frame now, the connection at the client's answer or the timeout."""
        transport = self.transport
        if transport is None or transport.is_disconnected or transport.is_close_frame_sent:
            return
        self._deliver = None
        self._waiting = None
        # picows' stubs name its enum of standard codes; it sends any 16-bit code.
        transport.send_close(cast(WSCloseCode, code), reason.encode())
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(CLOSE_TIMEOUT_S, transport.disconnect)

    # -- opening ------------------------------------------------------------------------

    def _principal(self) -> Principal | tuple[int, str]:
        settings = self._server.services.settings
        if not origin_allowed(settings, self._origin):
            return FORBIDDEN, "origin not allowed"
        if not self._token:
            return UNAUTHENTICATED, "missing token"
        try:
            return verify_access_token(settings.jwt_secret, self._token,
                                       audience=settings.jwt_audience)
        except TokenError as exc:
            return UNAUTHENTICATED, exc.code

    async def _open(self) -> None:
        """Authenticate, check access, join the room; then frames go to the hub."""
        assert self.transport is not None
        services = self._server.services
        channel = PicowsChannel(self.transport, self)
        principal = self._principal()
        if isinstance(principal, tuple):
            metrics.CLOSES.labels(str(principal[0])).inc()
            channel.close(*principal)
            return
        admission = await admit(services, principal, self._file_id)
        if isinstance(admission, tuple):
            metrics.CLOSES.labels(str(admission[0])).inc()
            channel.close(*admission)
            return
        hub, membership, access = admission.hub, admission.membership, admission.access
        peer = DirectPeer(channel, services.settings.collab.send_buffer_bytes)
        identify(peer, principal.user_id, access.workspace_id, not access.can_write)
        room = await join_room(admission, peer)
        if room is None:
            return
        ticket = await membership.track(principal.user_id, access.workspace_id, "document",
                                        access.role, lambda role: follow_role(peer, role))

        def gone() -> None:
            membership.release(ticket)
            hub.leave(room, peer)

        if not channel.open:  # closed while joining (a role change, the hub stopping)
            gone()
            return
        self._gone = gone
        self._start_delivering(hub, room, peer)

    def _start_delivering(self, hub: DocumentHub, room: Room, peer: DirectPeer) -> None:
        def deliver(data: bytes | str) -> None:
            on_frame(hub, room, peer, data)

        waiting, self._waiting = self._waiting or [], None
        self._deliver = deliver
        for message in waiting:
            if self._deliver is None:
                break
            deliver(message)


class PicowsDocuments:
    """The listener: one picows server; each socket's opening task is owned here."""

    def __init__(self, services: Services, host: str, port: int) -> None:
        self.services = services
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, opening: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(opening, name="picows-doc-open")
        self._tasks.add(task)
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("opening a picows document socket failed", exc_info=task.exception())

    def _route(self, request: WSUpgradeRequest) -> DocListener | None:
        raw_path, _, query = request.path.decode("latin-1").partition("?")
        raw_path = unquote(raw_path)
        file_id = raw_path[len(DOCS_PREFIX):]
        if not raw_path.startswith(DOCS_PREFIX) or not file_id or "/" in file_id:
            return None  # 404
        token = parse_qs(query).get("token", [None])[0]
        if token is None:
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
        return DocListener(self, file_id, token, request.headers.get("origin"))

    async def start(self) -> None:
        collab = self.services.settings.collab
        self._server = await ws_create_server(
            self._route, self.host, self.port,
            max_frame_size=collab.max_message_bytes,
            enable_auto_ping=True,
            auto_ping_idle_timeout=collab.keepalive_s,
            auto_ping_reply_timeout=collab.keepalive_s,
            logger_name="docs",
            # Idle editors dominate: a 2 KiB read buffer (picows' least; its default 16 KiB
            # per socket doubled the memory of an idle connection), grown for big frames.
            read_buffer_init_size=2048,
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("document sockets also served by picows on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and opening; open sockets are closed by the hub's stop (1012)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

