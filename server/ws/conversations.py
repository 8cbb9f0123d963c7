"""``GET /ws/conversations/{conversation_id}?token=JWT``: the AI chat (JSON text frames).

Authenticates (Origin, token), authorizes (any workspace role may watch; members and up
may send and cancel), then watches the conversation on the ``chat`` hub. Client frames:
``{"type":"user_message","content","context"}`` and ``{"type":"cancel"}``. Refusals go to
this socket only as ``{"type":"error","code","message"}``. A conversation of another
workspace is invisible: 4404, the same as one that does not exist.

A raw ASGI endpoint (so the app may call it without the middleware stack, like
``/ws/docs``). Under our uvicorn protocol (server/ws_transport.py) the watcher writes each
frame straight to the socket's transport from the hub's fan-out loop: one delta to W
watchers is W synchronous writes of the same text, no task or wake-up per watcher. Under
another ASGI server the watcher is a bounded queue drained by a writer task through
``send`` (deltas that queued up are merged into one frame). Either way the unsent backlog
is bounded (``WS_SEND_BUFFER_BYTES`` / ``watcher_queue_max`` frames): a slow consumer is
closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ai.chat import ChatError, ChatHub, Watcher, error_frame
from server.access import conversation_access, parse_uuid
from server.close_codes import (
    FORBIDDEN,
    NOT_FOUND,
    SLOW_CONSUMER,
    TOO_LARGE,
    TRY_AGAIN_LATER,
)
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_raw, refuse, text_messages
from server.ws_transport import direct_channel

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 256 * 1024
WRITER_GRACE_S = 5.0
SLOW_REASON = "too slow to keep up"
REVOKED_REASON = "no longer a member of this workspace"


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):
            await websocket.close(code, reason)


async def _writer(websocket: WebSocket, watcher: Watcher) -> None:
    """Sends a queued watcher's frames in order; closes a client too slow to keep up."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while True:
            frames = await watcher.get_frames()
            if frames is None:
                if watcher.overflowed:
                    await _close(websocket, SLOW_CONSUMER, SLOW_REASON)
                return
            for frame in frames:
                await websocket.send_text(frame)


class ConversationSocket:
    """The ASGI app mounted at ``/ws/conversations/{conversation_id}``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await authenticate_raw(scope, receive, send)
        if opened is None:
            return
        websocket, services, principal = opened
        conversation_id = parse_uuid(scope["path_params"]["conversation_id"])
        access = None
        if conversation_id is not None:
            access = await conversation_access(services.db, principal.user_id, conversation_id)
        if conversation_id is None or access is None or not access.is_member:
            await refuse(websocket, NOT_FOUND, "no such conversation")
            return
        hub: ChatHub | None = services.hubs.get("chat")
        if hub is None:
            await refuse(websocket, TRY_AGAIN_LATER, "chat is not available")
            return
        await websocket.accept()
        channel = direct_channel(scope)
        writer: asyncio.Task[None] | None = None
        if channel is not None:
            watcher = Watcher(
                hub.config.watcher_queue_max, sink=channel,
                sink_max_buffered=services.settings.collab.send_buffer_bytes,
                on_overflow=lambda: channel.close(SLOW_CONSUMER, SLOW_REASON),
            )
        else:
            watcher = Watcher(hub.config.watcher_queue_max)
            writer = asyncio.create_task(_writer(websocket, watcher))
        await hub.watch(conversation_id, watcher)
        # Membership hook (server/membership.py): a watcher removed from the workspace is
        # closed at once (4403), not at its next request.
        membership: Membership = services.hubs["membership"]

        async def follow_role(role: str | None) -> None:
            if role is None:
                if channel is not None:
                    channel.close(FORBIDDEN, REVOKED_REASON)
                else:
                    await _close(websocket, FORBIDDEN, REVOKED_REASON)

        ticket = await membership.track(principal.user_id, access.workspace_id, "chat",
                                        access.role, follow_role)
        try:
            await _serve(services, hub, websocket, watcher, conversation_id, principal.user_id)
        finally:
            membership.release(ticket)
            await hub.unwatch(conversation_id, watcher)
            if writer is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(writer, WRITER_GRACE_S)


async def _serve(
    services: Services,
    hub: ChatHub,
    websocket: WebSocket,
    watcher: Watcher,
    conversation_id: uuid.UUID,
    user: str,
) -> None:
    """The client's requests, until it goes away (or is closed)."""
    user_id = uuid.UUID(user)
    async for text in text_messages(websocket):
        if text is None:
            watcher.push(error_frame("bad_request", "send JSON text frames"))
            continue
        if len(text) > MAX_FRAME_CHARS:
            await _close(websocket, TOO_LARGE, "message too large")
            return
        # Roles change while sockets stay open: look the role up again for each request.
        current = await conversation_access(services.db, user, conversation_id)
        if current is None or not current.is_member:
            await _close(websocket, FORBIDDEN, REVOKED_REASON)
            return
        await _handle(hub, watcher, conversation_id, user_id, current.role, text)


async def _handle(
    hub: ChatHub,
    watcher: Watcher,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str | None,
    text: str,
) -> None:
    try:
        frame: Any = json.loads(text)
    except ValueError:
        watcher.push(error_frame("bad_request", "frames must be JSON"))
        return
    kind = frame.get("type") if isinstance(frame, dict) else None
    try:
        if kind == "user_message":
            await hub.submit(
                conversation_id, user_id, role, frame.get("content"), frame.get("context")
            )
        elif kind == "cancel":
            await hub.cancel(conversation_id, role)
        elif kind == "ping":
            watcher.push(json.dumps({"type": "pong"}))
        else:
            watcher.push(error_frame("bad_request", f"unknown message type {kind!r}"))
    except ChatError as exc:
        watcher.push(error_frame(exc.code, exc.message))


conversation_socket = ConversationSocket()
