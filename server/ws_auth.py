"""Authenticating a WebSocket before it is accepted: Origin allow-list, then ``?token=``.

Close codes are named in ``server.close_codes``. A browser always sends ``Origin``; a
non-browser client (Node, CLI) may omit it, which is allowed: hijacking needs a browser.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from server.auth.tokens import Principal, TokenError, verify_access_token
from server.close_codes import FORBIDDEN, UNAUTHENTICATED
from server.settings import Settings

log = logging.getLogger(__name__)


def origin_allowed(settings: Settings, origin: str | None) -> bool:
    return origin is None or origin in settings.allowed_origins


async def authenticate_websocket(websocket: WebSocket, settings: Settings) -> Principal | None:
    """The caller, or None after closing the socket with 4403 (origin) or 4401 (token).

    The socket is accepted before closing so the client sees the application close code
    (a close before accept is reported by browsers as a bare 1006/403).
    """
    origin = websocket.headers.get("origin")
    if not origin_allowed(settings, origin):
        log.info("websocket %s refused: origin %r not allowed", websocket.url.path, origin)
        await websocket.accept()
        await websocket.close(FORBIDDEN, "origin not allowed")
        return None
    token = websocket.query_params.get("token")
    if not token:
        auth = websocket.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
    if not token:
        await websocket.accept()
        await websocket.close(UNAUTHENTICATED, "missing token")
        return None
    try:
        return verify_access_token(settings.jwt_secret, token, audience=settings.jwt_audience)
    except TokenError as exc:
        await websocket.accept()
        await websocket.close(UNAUTHENTICATED, exc.code)
        return None
