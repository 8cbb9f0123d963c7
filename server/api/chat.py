"""``POST /api/v1/conversations/{id}/messages``: send a chat message over plain HTTP.

With ``Accept: text/event-stream`` the response is the reply as Server-Sent Events, the
same JSON events the WebSocket sends (``event: <type>`` + ``data: <json>``), ending with
the reply's ``done`` or ``error``. Without it, the response waits for the reply and is
``201 {"user_message", "message"}``. An endpoint of the REST table like the others (same
guards, validation and OpenAPI entry).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from ai.chat import ChatHub
from ai.chat_context import ChatError
from ai.chat_watchers import Watcher
from server.access import conversation_access
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError
from server.observe import request_facts

STATUS = {
    "bad_request": 400, "forbidden": 403, "not_found": 404, "busy": 409,
    "quota_exceeded": 402, "ai_unavailable": 503, "ai_installing": 503,
}


class ChatMessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str = Field(min_length=1, description="the question (AI_MAX_MESSAGE_CHARS at most)")
    context: dict[str, Any] | None = Field(
        None, description='{"file_id", "selection": {"from", "to"}} or {"open_file": file_id}'
    )


class ChatExchange(BaseModel):
    user_message: dict[str, Any]
    message: dict[str, Any]


def _chat_error(exc: ChatError) -> ApiError:
    return ApiError(STATUS.get(exc.code, 400), exc.code, exc.message, extra=exc.extra)


async def post_message(ctx: Ctx) -> Response | dict[str, Any]:
    conversation_id = ctx.uuid("conversation_id")
    access = await conversation_access(ctx.db, ctx.user_id, conversation_id)
    if access is None or not access.is_member:
        raise ApiError(404, "not_found", "no such conversation")
    facts = request_facts(ctx.request.scope)
    facts.workspace_id, facts.project_id = access.workspace_id, access.project_id
    hub: ChatHub | None = ctx.services.chat
    if hub is None:
        raise ApiError(503, "ai_unavailable", "AI provider not available")
    body: ChatMessageCreate = ctx.body
    watcher = Watcher(hub.config.watcher_queue_max)
    await hub.watch(conversation_id, watcher)
    try:
        created = await hub.submit(
            conversation_id, ctx.user_uuid, access.role, body.content, body.context
        )
    except ChatError as exc:
        await hub.unwatch(conversation_id, watcher)
        raise _chat_error(exc) from None
    message_id = created["message"]["id"]
    if "text/event-stream" in ctx.request.headers.get("accept", ""):
        return StreamingResponse(
            _events(hub, conversation_id, watcher, message_id),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    final: dict[str, Any] | None = None
    async for kind, frame in _frames(hub, conversation_id, watcher, message_id):
        if kind in ("done", "error"):
            final = json.loads(frame)
    if final is None or final["type"] == "error":
        detail = final or {"code": "internal_error", "message": "the reply was interrupted"}
        raise ApiError(502, detail["code"], detail["message"])
    return {"user_message": created["user_message"], "message": final["message"]}


async def _frames(
    hub: ChatHub, conversation_id: uuid.UUID, watcher: Watcher, message_id: str
) -> AsyncIterator[tuple[str, str]]:
    """(type, frame) of the watcher until this reply's ``done``/``error``."""
    try:
        while True:
            frames = await watcher.get_frames()
            if frames is None:
                return
            for frame in frames:
                event = json.loads(frame)
                kind = str(event.get("type"))
                yield kind, frame
                if kind in ("done", "error") and event.get("message_id") == message_id:
                    return
    finally:
        await hub.unwatch(conversation_id, watcher)


async def _events(
    hub: ChatHub, conversation_id: uuid.UUID, watcher: Watcher, message_id: str
) -> AsyncIterator[bytes]:
    async for kind, frame in _frames(hub, conversation_id, watcher, message_id):
        yield f"event: {kind}\ndata: {frame}\n\n".encode()


ENDPOINTS = [
    Endpoint("POST", "/conversations/{conversation_id}/messages", post_message,
             "Ask the assistant: the reply as JSON once done, or streamed as Server-Sent "
             "Events with Accept: text/event-stream (member or higher)", "conversations",
             body=ChatMessageCreate, response=ChatExchange, status=201,
             errors=(403, 409, 429, 502, 503), sse=True),
]
