"""``POST /api/v1/conversations/{id}/messages``: send a chat message over plain HTTP.

With ``Accept: text/event-stream`` the response is the reply as Server-Sent Events, the
same JSON events the WebSocket sends (``event: <type>`` + ``data: <json>``), ending with
the reply's ``done`` or ``error``. Without it, the response waits for the reply and is
``201 {"user_message", "message"}``. Same guards as the REST API (Origin, CORS, size).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ai.chat import ChatError, ChatHub, Watcher
from server.access import conversation_access
from server.auth.tokens import TokenError, verify_access_token
from server.errors import ApiError, error_body
from server.middleware import browser_guards
from server.observe import request_facts
from server.services import Services

PATH = "/api/v1/conversations/{conversation_id}/messages"
STATUS = {
    "bad_request": 400, "forbidden": 403, "not_found": 404, "busy": 409,
    "quota_exceeded": 429, "ai_unavailable": 503,
}
MAX_BODY = 256 * 1024


def _error(code: str, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status or STATUS.get(code, 400))


def _principal_id(request: Request, services: Services) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "authentication required")
    settings = services.settings
    try:
        principal = verify_access_token(
            settings.jwt_secret, token.strip(), audience=settings.jwt_audience
        )
    except TokenError as exc:
        raise ApiError(401, exc.code, exc.message) from exc
    return principal.user_id


async def post_message(request: Request) -> Response:
    services: Services = request.app.state.services
    facts = request_facts(request.scope)
    facts.route = PATH
    try:
        user_id = _principal_id(request, services)
    except ApiError as exc:
        return _error(exc.code, exc.message, exc.status)
    facts.user_id = user_id
    try:
        conversation_id = uuid.UUID(request.path_params["conversation_id"])
    except ValueError:
        return _error("not_found", "no such conversation")
    access = await conversation_access(services.db, user_id, conversation_id)
    if access is None or not access.is_member:
        return _error("not_found", "no such conversation")
    facts.workspace_id, facts.project_id = access.workspace_id, access.project_id
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error("payload_too_large", "message too large", 413)
    try:
        body: Any = json.loads(raw or b"{}")
    except ValueError:
        return _error("bad_request", "body must be JSON")
    if not isinstance(body, dict):
        return _error("bad_request", "body must be a JSON object")
    hub: ChatHub | None = services.hubs.get("chat")
    if hub is None:
        return _error("ai_unavailable", "AI provider not available")
    watcher = Watcher(hub.config.watcher_queue_max)
    await hub.watch(conversation_id, watcher)
    try:
        created = await hub.submit(
            conversation_id, uuid.UUID(user_id), access.role, body.get("content"),
            body.get("context"),
        )
    except ChatError as exc:
        await hub.unwatch(conversation_id, watcher)
        return _error(exc.code, exc.message)
    message_id = created["message"]["id"]
    if "text/event-stream" in request.headers.get("accept", ""):
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
        return _error(detail["code"], detail["message"], 502)
    return JSONResponse({"user_message": created["user_message"], "message": final["message"]},
                        201)


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


class ChatStreamApp:
    """The endpoint behind the REST API's browser guards (built on first use)."""

    def __init__(self) -> None:
        self.router = Router(routes=[Route(PATH, post_message, methods=["POST"])])
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = browser_guards(self.router, scope["app"].state.settings)
        await self._app(scope, receive, send)


def chat_stream_route() -> Route:
    return Route(PATH, ChatStreamApp(), methods=["POST"])
