"""``GET /ws/docs/{file_id}?token=JWT``: document sync (y-websocket protocol, binary frames).

A raw ASGI endpoint, called by ``server.app.App`` without the middleware stack: Starlette's
``WebSocket`` is used for the handshake (authentication, authorization, accept); afterwards
frames go straight through ASGI ``receive``/``send``, so the hot path is one ``receive``,
the room's work, and one direct ``send`` per peer.

A socket gets a drain task only while it has a backlog; a full backlog closes it with 1013
(a slow consumer is never silently skipped). Keepalive pings are uvicorn's
(``ws_ping_interval``, 20 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import Any, cast

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
    """The hub's ``Peer`` over an ASGI WebSocket: direct writes, a bounded backlog.

    A frame is written at once when nothing is in flight: the ASGI ``send`` coroutine is
    stepped by hand and, with the transport not paused, finishes in that first step (no
    task, no wake-up). Only when a send suspends (back-pressure) does a drain task take
    over the rest of it and the frames queued behind it; a full backlog closes the socket
    with 1013 (a slow consumer is never silently skipped). An idle socket owns no task.
    """

    __slots__ = (
        "_close", "_drain", "_queue", "_queue_max", "_send", "awareness_ids", "conn_id",
        "denied_sent", "read_only", "user_id", "workspace_id",
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
        self._close: tuple[int, str] | None = None
        # Owns the backlog while one exists: the suspended send, queued frames, the close.
        self._drain: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._close is not None

    def send(self, frame: bytes) -> None:
        if self._close is not None:
            return
        if self._drain is not None:
            if len(self._queue) >= self._queue_max:
                log.warning("slow consumer: conn=%s user=%s (%d frames queued)",
                            self.conn_id, self.user_id, len(self._queue))
                metrics.CLOSES.labels(str(SLOW_CONSUMER)).inc()
                self.close(SLOW_CONSUMER, "slow consumer")
                return
            self._queue.append(frame)
            return
        step = self._send({"type": "websocket.send", "bytes": frame})
        if not isinstance(step, Coroutine):
            self._start_drain(step)
            return
        try:
            yielded = step.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the client went away
            self._gone(exc)
            return
        self._start_drain(_finish(step, yielded))

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            # A close frame's reason must fit in 123 bytes.
            self._close = (code, reason.encode("utf-8")[:120].decode("utf-8", "ignore"))
            self._queue.clear()
            if self._drain is None:
                self._start_drain(None)

    def _gone(self, exc: BaseException) -> None:
        log.debug("sending to %s stopped: %s", self.conn_id, exc)
        self._close = self._close or (GOING_AWAY, "gone")
        self._queue.clear()

    def _start_drain(self, pending: Awaitable[None] | None) -> None:
        self._drain = asyncio.create_task(
            self._write(pending), name=f"ws-docs-drain-{self.conn_id}"
        )

    async def _write(self, pending: Awaitable[None] | None) -> None:
        send = self._send
        queue = self._queue
        try:
            if pending is not None:
                await pending
            while queue:
                await send({"type": "websocket.send", "bytes": queue.popleft()})
            if self._close is not None:
                code, reason = self._close
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:  # the client went away while we were sending
            self._gone(exc)
        finally:
            self._drain = None

    async def finish(self) -> None:
        """Let a pending close go out (within WRITER_GRACE_S), then stop the drain task."""
        drain = self._drain
        if drain is None or drain.done():
            return
        if self._close is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(drain), WRITER_GRACE_S)
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain


async def _finish(step: Coroutine[Any, Any, None], yielded: object) -> None:
    """Run a coroutine whose first step was taken by hand to its end, as a task would.

    ``yielded`` is what that step yielded: a future it waits on, or ``None`` (a bare
    yield, as in ``asyncio.sleep(0)``). The coroutine reads a future's outcome itself.
    """
    while True:
        future = cast("asyncio.Future[Any] | None", yielded)
        thrown: BaseException | None = None
        try:
            if future is None:
                await asyncio.sleep(0)
            else:
                # The coroutine's yield marked it blocking, as a task would have cleared.
                future._asyncio_future_blocking = False
                await future
        except BaseException as exc:
            # The future's own outcome reaches the coroutine through its result(); anything
            # else (this task cancelled after the future was done) is thrown into it.
            own = future is not None and future.done() and (
                future.cancelled() or future.exception() is exc
            )
            thrown = None if own else exc
        try:
            yielded = step.send(None) if thrown is None else step.throw(thrown)
        except StopIteration:
            return


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
