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

from starlette.datastructures import MutableHeaders
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


def same_origin(scope: Scope, origin: str, host: str | None) -> bool:
    scheme = "https" if scope.get("scheme") in {"https", "wss"} else "http"
    return host is not None and origin == f"{scheme}://{host}"


def vary_on_origin(send: Send) -> Send:
    """``send`` that adds ``Vary: Origin`` to the response, as ``CORSMiddleware`` does for a
    request without ``Origin`` (a cache must not serve the answer to a cross-site one)."""

    async def varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        await send(message)

    return varying


class BrowserGuards:
    """The origin check, CORS and the size limit in one layer: the request headers are read
    once, and Starlette's ``CORSMiddleware`` runs only for requests that carry ``Origin``
    (those without it need no CORS headers but ``Vary``). Three layers of their own, each
    reading the headers again, cost about as much as the rest of the routing."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...], max_bytes: int) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.max_bytes = max_bytes
        self.cors = CORSMiddleware(
            self._limited,
            allow_origins=list(allowed),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["retry-after"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = host = length = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if origin is None:
            await self._limited(scope, receive, vary_on_origin(send), length)
            return
        if origin not in self.allowed and not same_origin(scope, origin, host):
            await send_json_error(send, 403, "origin_not_allowed", "origin not allowed")
            return
        await self.cors(scope, receive, send)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, length: bytes | None = None
    ) -> None:
        """The app, refusing a body over ``max_bytes``: by its ``Content-Length`` up front
        or, for chunked bodies, as soon as the limit is passed."""
        if length is None:
            length = next((v for n, v in scope["headers"] if n == b"content-length"), None)
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
    """``app`` behind the origin check, CORS and the size limit; ``max_bytes`` replaces
    ``settings.max_request_bytes`` (file uploads)."""
    limit = settings.max_request_bytes if max_bytes is None else max_bytes
    return BrowserGuards(app, settings.allowed_origins, limit)
