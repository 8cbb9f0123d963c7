"""``GET /ws/docs/{file_id}?token=JWT``: document sync (y-websocket protocol, binary frames).

A raw ASGI endpoint: Starlette's ``WebSocket`` is used for the handshake (authentication,
authorization, accept); afterwards frames go straight through ASGI ``receive``/``send``,
so the hot path is one ``receive``, the room's work, and one queued ``send`` per peer.

Each socket has one writer task draining a bounded queue; a full queue closes the socket
with 1013 (a slow consumer is never silently skipped). Keepalive pings are uvicorn's
(``ws_ping_interval``, 20 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque

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
    NOT_FOUND,
    SLOW_CONSUMER,
    TRY_AGAIN_LATER,
)
from server.services import Services
from server.ws_auth import authenticate_websocket

log = logging.getLogger(__name__)

WRITER_GRACE_S = 2.0


class SocketPeer:
    """The hub's ``Peer`` over an ASGI WebSocket: a bounded queue and one writer task."""

    __slots__ = (
        "_close", "_queue", "_queue_max", "_send", "_waiter", "awareness_ids", "conn_id",
        "denied_sent", "read_only", "user_id", "workspace_id", "writer",
    )

    def __init__(
        self,
        send: Send,
        *,
        user_id: str,
        workspace_id: uuid.UUID,
        read_only: bool,
        queue_max: int,
    ) -> None:
        self.conn_id = uuid.uuid4().hex[:12]
        self.user_id = user_id
        self.workspace_id = workspace_id
        self.read_only = read_only
        self.denied_sent = False
        self.awareness_ids: set[int] = set()
        self._send = send
        self._queue: deque[bytes] = deque()
        self._queue_max = queue_max
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
        if len(self._queue) >= self._queue_max:
            log.warning("slow consumer: conn=%s user=%s (%d frames queued)",
                        self.conn_id, self.user_id, len(self._queue))
            metrics.CLOSES.labels(str(SLOW_CONSUMER)).inc()
            self.close(SLOW_CONSUMER, "slow consumer")
            return
        self._queue.append(frame)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            # A close frame's reason must fit in 123 bytes.
            self._close = (code, reason.encode("utf-8")[:120].decode("utf-8", "ignore"))
            self._queue.clear()
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
                    await send({"type": "websocket.send", "bytes": queue.popleft()})
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


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    metrics.CLOSES.labels(str(code)).inc()
    await websocket.accept()
    await websocket.close(code, reason)


class DocumentSocket:
    """The ASGI app mounted at ``/ws/docs/{file_id}``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        services: Services = scope["app"].state.services
        principal = await authenticate_websocket(websocket, services.settings)
        if principal is None:
            return
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
        hub: DocumentHub = services.hubs["documents"]
        await websocket.accept()
        peer = SocketPeer(
            send,
            user_id=principal.user_id,
            workspace_id=access.workspace_id,
            read_only=not access.can_write,
            queue_max=services.settings.collab.send_queue_max,
        )
        # This frame lives as long as the socket: keep only what the peer needs.
        del websocket, principal, access
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
        try:
            await self._serve(hub, room, peer, receive)
        finally:
            await hub.leave(room, peer)
            await peer.finish()

    @staticmethod
    async def _serve(hub: DocumentHub, room: Room, peer: SocketPeer, receive: Receive) -> None:
        handle = hub.receive
        while not peer.closed:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    log.warning("document protocol fault: conn=%s user=%s file=%s: text frame",
                                peer.conn_id, peer.user_id, room.file_id)
                    metrics.CLOSES.labels(str(BAD_MESSAGE)).inc()
                    peer.close(BAD_MESSAGE, "binary frames only")
                    return
                await handle(room, peer, data)
            elif kind == "websocket.disconnect":
                return


document_socket = DocumentSocket()
