"""The reference IDE page: ``web/dist`` served at ``/`` with a strict Content-Security-Policy.

Mounted last so it never shadows ``/api``, ``/ws``, ``/healthz`` or ``/metrics``. Scripts
come only from this origin (no inline script, no eval); sockets only to this host. Styles
allow ``'unsafe-inline'`` because CodeMirror's remote-cursor widgets and xterm.js set
``style`` attributes and ``<style>`` elements at run time; nothing executable can ride on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sockets.close_codes import NOT_FOUND

log = logging.getLogger(__name__)

DEFAULT_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>iCreateTechs</title></head>
<body><h1>iCreateTechs</h1>
<p>The IDE page is not built yet: run <code>make run</code>
(or <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>).</p>
<p>The API is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p></body></html>
"""


def content_security_policy(host: str, frames: str = "") -> str:
    """``frames``: the preview origin's hosts (``http://*.localhost:8001``), the only frames
    the page may show (the live preview pane)."""
    sockets = f" ws://{host} wss://{host}" if host else ""
    return "; ".join(
        [
            f"frame-src {frames}" if frames else "frame-src 'none'",
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "worker-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            host: str = bytes(value).decode("latin-1")
            # Only a plausible host[:port] goes into the header (no CSP injection).
            if host and all(ch.isalnum() or ch in ".-:[]" for ch in host):
                return host
            return ""
    return ""


class WebPage:
    """ASGI app: the built page with security headers; 404 for anything not in the build."""

    def __init__(self, dist: Path = DEFAULT_DIST) -> None:
        self.dist = dist
        self.built = (dist / "index.html").is_file()
        self.files: ASGIApp | None = StaticFiles(directory=dist, html=True) if self.built else None
        if not self.built:
            log.warning("web page not built (%s missing): serving a placeholder", dist)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No socket lives under the page: accept, then close with 4404 so the client sees
            # why (a close before accept reaches browsers as a bare 403/1006).
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": NOT_FOUND, "reason": "no socket"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in {"GET", "HEAD"}:
            raise HTTPException(405)
        headers = security_headers(_host(scope), preview_frames(scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() not in headers]
                raw.extend(headers.items())
                message = {**message, "headers": raw}
            await send(message)

        if self.files is None:
            if scope["path"] not in {"/", "/index.html"}:
                raise HTTPException(404)
            await HTMLResponse(NOT_BUILT_PAGE)(scope, receive, send_with_headers)
            return
        await self.files(scope, receive, send_with_headers)


def preview_frames(scope: Scope) -> str:
    """The preview origin of this app, as a CSP source for every preview host, or ''."""
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    previews = getattr(services, "previews", None)
    if previews is None:
        return ""
    scheme, _, host = str(previews.origin).partition("://")
    return f"{scheme}://*.{host}"


def security_headers(host: str, frames: str = "") -> dict[bytes, bytes]:
    return {
        b"content-security-policy": content_security_policy(host, frames).encode(),
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"no-referrer",
        b"cross-origin-opener-policy": b"same-origin",
        b"x-frame-options": b"DENY",
        # The build has stable file names: always revalidate (ETag) so a rebuild shows at once.
        b"cache-control": b"no-cache",
    }


def web_route(dist: Path = DEFAULT_DIST) -> Mount:
    """The catch-all mount for the page; append it after every other route."""
    return Mount("/", app=WebPage(dist), name="web")
