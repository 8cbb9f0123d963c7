"""``GET /ws/conversations/{conversation_id}?token=JWT``: the AI chat (JSON text frames).

Authenticates (Origin, token), authorizes (any workspace role may watch; members and up
may send and cancel), then watches the conversation on the ``chat`` hub. Client frames:
``{"type":"user_message","content","context"}`` and ``{"type":"cancel"}``. Refusals go to
this socket only as ``{"type":"error","code","message"}``. A conversation of another
workspace is invisible: 4404, the same as one that does not exist.

A raw ASGI endpoint (so the app may call it without the middleware stack, like
``/ws/docs``). The watcher's sink is the socket's outbox (sockets.outbox): under our
uvicorn protocol each frame is written straight to the transport from the hub's fan-out
loop (one delta to W watchers is W synchronous writes of the same text), else it goes to
the outbox's queue and writer. Either way the unsent backlog is bounded by bytes
(``WS_SEND_BUFFER_BYTES``): a slow consumer is closed with 1013.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Receive, Scope, Send

from ai.chat import ChatHub
from ai.chat_context import ChatError
from ai.chat_watchers import Watcher, error_frame
from server.access import conversation_access, parse_uuid
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_raw, refuse
from sockets.close_codes import (
    FORBIDDEN,
    NOT_FOUND,
    SLOW_CONSUMER,
    TOO_LARGE,
    TRY_AGAIN_LATER,
)
from sockets.outbox import Outbox, open_outbox
from sockets.receive import messages

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 256 * 1024
SLOW_REASON = "too slow to keep up"
REVOKED_REASON = "no longer a member of this workspace"


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
        hub: ChatHub | None = services.chat
        if hub is None:
            await refuse(websocket, TRY_AGAIN_LATER, "chat is not available")
            return
        membership: Membership | None = services.membership
        if membership is None:
            await refuse(websocket, TRY_AGAIN_LATER, "membership is not available")
            return
        await websocket.accept()
        limit = services.settings.collab.send_buffer_bytes
        outbox = open_outbox(scope, send, limit)
        watcher = Watcher(
            hub.config.watcher_queue_max, sink=outbox, sink_max_buffered=limit,
            on_overflow=lambda: outbox.close(SLOW_CONSUMER, SLOW_REASON),
        )
        await hub.watch(conversation_id, watcher)

        # Membership hook (server/membership.py): a watcher removed from the workspace is
        # closed at once (4403), not at its next request.
        def follow_role(role: str | None) -> None:
            if role is None:
                outbox.close(FORBIDDEN, REVOKED_REASON)

        ticket = await membership.track(principal.user_id, access.workspace_id, "chat",
                                        access.role, follow_role)
        try:
            await _serve(services, hub, messages(receive), outbox, watcher, conversation_id,
                         principal.user_id)
        finally:
            membership.release(ticket)
            await hub.unwatch(conversation_id, watcher)
            await outbox.finish()


async def _serve(
    services: Services,
    hub: ChatHub,
    incoming: AsyncIterator[str | bytes],
    outbox: Outbox,
    watcher: Watcher,
    conversation_id: uuid.UUID,
    user: str,
) -> None:
    """The client's requests, until it goes away (or is closed)."""
    user_id = uuid.UUID(user)
    async for text in incoming:
        if outbox.closed:
            return
        if not isinstance(text, str):
            watcher.push(error_frame("bad_request", "send JSON text frames"))
            continue
        if len(text) > MAX_FRAME_CHARS:
            outbox.close(TOO_LARGE, "message too large")
            return
        # Roles change while sockets stay open: look the role up again for each request.
        current = await conversation_access(services.db, user, conversation_id)
        if current is None or not current.is_member:
            outbox.close(FORBIDDEN, REVOKED_REASON)
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
        watcher.push(error_frame(exc.code, exc.message, **exc.extra))


conversation_socket = ConversationSocket()
