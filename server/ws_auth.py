"""Authenticating a WebSocket before it is accepted: Origin allow-list, then ``?token=``.

Close codes are named in ``sockets.close_codes``. A browser always sends ``Origin``; a
non-browser client (Node, CLI) may omit it, which is allowed: hijacking needs a browser.
"""

from __future__ import annotations

import logging

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.auth.tokens import Principal, TokenError, verify_access_token
from server.services import Services
from server.settings import Settings
from sockets.close_codes import FORBIDDEN, UNAUTHENTICATED

log = logging.getLogger(__name__)


def origin_allowed(settings: Settings, origin: str | None) -> bool:
    return origin is None or origin in settings.allowed_origins


async def refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with ``code``: a close before accept reaches browsers as a bare
    1006/403, so the client would never see the application's close code."""
    await websocket.accept()
    await websocket.close(code, reason)


async def authenticate_websocket(websocket: WebSocket, settings: Settings) -> Principal | None:
    """The caller, or None after refusing the socket with 4403 (origin) or 4401 (token)."""
    origin = websocket.headers.get("origin")
    if not origin_allowed(settings, origin):
        log.info("websocket %s refused: origin %r not allowed", websocket.url.path, origin)
        await refuse(websocket, FORBIDDEN, "origin not allowed")
        return None
    token = websocket.query_params.get("token")
    if not token:
        auth = websocket.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
    if not token:
        await refuse(websocket, UNAUTHENTICATED, "missing token")
        return None
    try:
        return verify_access_token(settings.jwt_secret, token, audience=settings.jwt_audience)
    except TokenError as exc:
        await refuse(websocket, UNAUTHENTICATED, exc.code)
        return None


async def authenticate_raw(
    scope: Scope, receive: Receive, send: Send
) -> tuple[WebSocket, Services, Principal] | None:
    """For raw ASGI socket endpoints: the handshake's WebSocket, the app's services and the
    caller, or None when the socket was refused (see ``authenticate_websocket``)."""
    websocket = WebSocket(scope, receive, send)
    services: Services = scope["app"].state.services
    principal = await authenticate_websocket(websocket, services.settings)
    if principal is None:
        return None
    return websocket, services, principal
