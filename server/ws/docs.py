"""``GET /ws/docs/{file_id}?token=JWT``: document sync (y-websocket protocol, binary frames).

A raw ASGI endpoint: Starlette's ``WebSocket`` is used for the handshake (authentication,
authorization, accept). Afterwards, under our uvicorn protocol (server/ws_transport.py),
every frame for a peer is written straight to its transport: one room broadcast is one
synchronous write per peer, with no task or coroutine per socket. Under another ASGI
server a peer is a bounded queue drained by a writer task through ``send``.

Either way the unsent backlog is bounded (``WS_SEND_BUFFER_BYTES``): a slow consumer is
closed with 1013, never silently skipped. Keepalive pings are uvicorn's
(``ws_ping_interval``, 20 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from collab import metrics
from collab.hub import DocumentHub
from collab.room import Room
from collab.store import FileGone
from server.access import file_access, parse_uuid
from server.close_codes import (
    BAD_MESSAGE,
    FORBIDDEN,
    GOING_AWAY,
    INTERNAL_ERROR,
    NOT_A_DOCUMENT,
    NOT_FOUND,
    SLOW_CONSUMER,
    TRY_AGAIN_LATER,
)
from server.membership import Membership
from server.ws_auth import authenticate_raw, refuse
from server.ws_transport import DirectChannel, direct_channel

log = logging.getLogger(__name__)

WRITER_GRACE_S = 2.0


class _PeerIdentity:
    """Who is on the socket, as the hub's ``Peer`` protocol describes it."""

    __slots__ = ("awareness_ids", "conn_id", "denied_sent", "read_only", "user_id", "workspace_id")

    def __init__(self, user_id: str, workspace_id: uuid.UUID, read_only: bool) -> None:
        self.conn_id = uuid.uuid4().hex[:12]
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.read_only = read_only
        self.denied_sent = False
        self.awareness_ids: set[int] = set()


class DirectPeer(_PeerIdentity):
    """The hub's ``Peer`` over a direct channel: each frame goes to the transport at once.

    The transport's buffer is the send queue: a socket whose backlog exceeds the bound when
    another frame is due is closed with 1013 (the close frame follows what is buffered).
    """

    __slots__ = ("_buffer_max", "_channel", "_closed")

    def __init__(
        self,
        channel: DirectChannel,
        *,
        user_id: str,
        workspace_id: uuid.UUID,
        read_only: bool,
        buffer_max: int,
    ) -> None:
        super().__init__(user_id, workspace_id, read_only)
        self._channel = channel
        self._buffer_max = buffer_max
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or not self._channel.open

    @property
    def channel(self) -> DirectChannel:
        return self._channel

    def send(self, frame: bytes) -> None:
        if self._closed:
            return
        channel = self._channel
        if channel.buffered > self._buffer_max:
            _slow_consumer(self, channel.buffered)
            return
        channel.send_bytes(frame)

    def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close(code, _close_reason(reason))

    async def finish(self) -> None:
        """Nothing runs on this peer's behalf: sends happened when they were made."""


class QueuedPeer(_PeerIdentity):
    """The hub's ``Peer`` over plain ASGI (another server): a bounded queue and a writer."""

    __slots__ = ("_buffer_max", "_close", "_queue", "_queued_bytes", "_send", "_waiter", "writer")

    def __init__(
        self,
        send: Send,
        *,
        user_id: str,
        workspace_id: uuid.UUID,
        read_only: bool,
        buffer_max: int,
    ) -> None:
        super().__init__(user_id, workspace_id, read_only)
        self._send = send
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._buffer_max = buffer_max
        # The writer's wake-up: a bare future while it waits (lighter than an Event per socket).
        self._waiter: asyncio.Future[None] | None = None
        self._close: tuple[int, str] | None = None
        self.writer: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._close is not None

    def send(self, frame: bytes) -> None:
        if self._close is not None:
            return
        if self._queued_bytes > self._buffer_max:
            _slow_consumer(self, self._queued_bytes)
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, _close_reason(reason))
            self._queue.clear()
            self._queued_bytes = 0
            self._wake()

    def start(self) -> None:
        self.writer = asyncio.create_task(self._write(), name=f"ws-docs-writer-{self.conn_id}")

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
                while queue:
                    frame = queue.popleft()
                    self._queued_bytes -= len(frame)
                    await send({"type": "websocket.send", "bytes": frame})
                if self._close is not None:
                    code, reason = self._close
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
        except Exception as exc:  # the client went away while we were sending
            log.debug("writer of %s stopped: %s", self.conn_id, exc)
            self._close = self._close or (GOING_AWAY, "gone")

    async def finish(self) -> None:
        """Let the writer flush a pending close, then stop it."""
        writer = self.writer
        if writer is None or writer.done():
            return
        if self._close is None:
            writer.cancel()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), WRITER_GRACE_S)
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


SocketPeer = DirectPeer | QueuedPeer


def _close_reason(reason: str) -> str:
    # A close frame's reason must fit in 123 bytes.
    return reason.encode("utf-8")[:120].decode("utf-8", "ignore")


def _slow_consumer(peer: SocketPeer, backlog: int) -> None:
    log.warning("slow consumer: conn=%s user=%s (%d bytes unsent)",
                peer.conn_id, peer.user_id, backlog)
    metrics.CLOSES.labels(str(SLOW_CONSUMER)).inc()
    peer.close(SLOW_CONSUMER, "slow consumer")


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    metrics.CLOSES.labels(str(code)).inc()
    await refuse(websocket, code, reason)


class DocumentSocket:
    """The ASGI app mounted at ``/ws/docs/{file_id}``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await authenticate_raw(scope, receive, send)
        if opened is None:
            return
        websocket, services, principal = opened
        file_id = parse_uuid(scope["path_params"]["file_id"])
        access = None
        if file_id is not None:
            access = await file_access(services.db, principal.user_id, file_id)
        if file_id is None or access is None or access.is_folder or access.is_deleted:
            await _refuse(websocket, NOT_FOUND, "no such file")
            return
        if not access.is_member:
            await _refuse(websocket, FORBIDDEN, "not a member of this file's workspace")
            return
        if access.is_stored:
            await _refuse(websocket, NOT_A_DOCUMENT, "a binary or large file is not a document")
            return
        hub: DocumentHub = services.hubs["documents"]
        membership: Membership = services.hubs["membership"]
        await websocket.accept()
        user_id, workspace_id, role = principal.user_id, access.workspace_id, access.role
        read_only, buffer_max = not access.can_write, services.settings.collab.send_buffer_bytes
        # This frame and the scope live as long as the socket: keep only what the peer needs
        # (the handshake's headers and the token in the query string are not needed again).
        del websocket, principal, access
        scope["headers"], scope["query_string"] = [], b""
        channel = direct_channel(scope)
        peer: SocketPeer
        if channel is not None:
            peer = DirectPeer(channel, user_id=user_id, workspace_id=workspace_id,
                              read_only=read_only, buffer_max=buffer_max)
        else:
            peer = QueuedPeer(send, user_id=user_id, workspace_id=workspace_id,
                              read_only=read_only, buffer_max=buffer_max)
            peer.start()
        try:
            room = await hub.join(file_id, peer)
        except FileGone:
            peer.close(NOT_FOUND, "no such file")
            metrics.CLOSES.labels(str(NOT_FOUND)).inc()
            await peer.finish()
            return
        except RuntimeError:  # the hub is stopping
            peer.close(TRY_AGAIN_LATER, "server restarting")
            await peer.finish()
            return
        except Exception:
            log.exception("loading document %s failed (conn=%s user=%s)",
                          file_id, peer.conn_id, peer.user_id)
            peer.close(INTERNAL_ERROR, "could not load the document")
            metrics.CLOSES.labels(str(INTERNAL_ERROR)).inc()
            await peer.finish()
            return
        except BaseException:  # cancelled while the document loaded: stop the writer too
            await peer.finish()
            raise
        # Membership hook: a role change or removal reaches this socket (server/membership.py).
        ticket = await membership.track(user_id, workspace_id, "document", role,
                                        lambda new_role: follow_role(peer, new_role))

        def gone() -> None:
            membership.release(ticket)
            hub.leave(room, peer)

        detached = False
        try:
            detached = await self._serve(hub, room, peer, receive, gone)
        finally:
            if not detached:
                gone()
                await peer.finish()

    @staticmethod
    async def _serve(
        hub: DocumentHub, room: Room, peer: SocketPeer, receive: Receive,
        gone: Callable[[], None],
    ) -> bool:
        """Frames until the socket closes; True if the socket was handed to its transport."""
        channel = peer.channel if isinstance(peer, DirectPeer) else None
        while not peer.closed:
            if channel is not None and channel.nothing_queued:
                # What the ASGI queue held has been handled, so the order is kept. From
                # here frames go from the transport straight to the hub, and leaving runs
                # when the connection is lost: no coroutine waits per socket.
                if channel.detach(
                    lambda data: _on_frame(hub, room, peer, data),
                    gone,
                ):
                    return True
                channel = None
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                _on_frame(hub, room, peer, message["text"] if data is None else data)
            elif kind == "websocket.disconnect":
                return False
        return False


def follow_role(peer: SocketPeer, role: str | None) -> None:
    """The membership path's verdict: removed -> closed (4403); a viewer's socket is
    read-only (its updates are refused), a member's or above writable again."""
    if role is None:
        if not peer.closed:
            metrics.CLOSES.labels(str(FORBIDDEN)).inc()
            peer.close(FORBIDDEN, "access revoked")
        return
    peer.read_only = role == "viewer"
    peer.denied_sent = False


def _on_frame(hub: DocumentHub, room: Room, peer: SocketPeer, data: bytes | str) -> None:
    if isinstance(data, str):
        log.warning("document protocol fault: conn=%s user=%s file=%s: text frame",
                    peer.conn_id, peer.user_id, room.file_id)
        metrics.CLOSES.labels(str(BAD_MESSAGE)).inc()
        peer.close(BAD_MESSAGE, "binary frames only")
        return
    hub.receive(room, peer, data)


document_socket = DocumentSocket()
