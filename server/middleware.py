"""Browser-facing guards for the REST API: Origin allow-list, CORS, request size cap.

- A request with an ``Origin`` header that is neither in ``settings.allowed_origins`` nor
  the server's own origin is refused with 403 (cross-site request forgery with cookies or
  stolen tokens needs a browser, and browsers always send ``Origin`` cross-site).
- Allowed origins get CORS headers (Starlette's ``CORSMiddleware``, credentials allowed).
- A body larger than ``settings.max_request_bytes`` is refused with 413, by its
  ``Content-Length`` up front or, for chunked bodies, as soon as the limit is passed.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_body
from server.settings import Settings


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes the limit."""


async def send_json_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def same_origin(scope: Scope, origin: str) -> bool:
    host = Headers(scope=scope).get("host")
    scheme = "https" if scope.get("scheme") in {"https", "wss"} else "http"
    return host is not None and origin == f"{scheme}://{host}"


class OriginCheck:
    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin not in self.allowed and not same_origin(
                scope, origin
            ):
                await send_json_error(send, 403, "origin_not_allowed", "origin not allowed")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                await send_json_error(send, 400, "bad_request", "invalid content-length")
                return
            if too_large:
                await send_json_error(send, 413, "payload_too_large", "request body too large")
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


def browser_guards(
    app: ASGIApp, settings: Settings, max_bytes: int | None = None
) -> ASGIApp:
    """``app`` wrapped in the origin check, CORS and the size limit (outermost first);
    ``max_bytes`` replaces ``settings.max_request_bytes`` (file uploads)."""
    limited = BodyLimit(app, settings.max_request_bytes if max_bytes is None else max_bytes)
    cors = CORSMiddleware(
        limited,
        allow_origins=list(settings.allowed_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["authorization", "content-type"],
        expose_headers=["retry-after"],
        max_age=600,
    )
    return OriginCheck(cors, settings.allowed_origins)
