"""The preview origin: an ASGI app on its own port, ``<label>.<preview host>`` per preview.

Each preview has an origin of its own (``<project hex>-<d|s|p>.localhost:8001``), never the
IDE's: a user's app cannot read the IDE's sessionStorage, cookies or responses, nor another
project's preview. Requests are streamed to the preview's Unix socket (``runtime.socket``)
with aiohttp, bodies both ways without buffering; WebSocket upgrades are relayed frame by
frame. Access: the project's members (any role) through a session cookie obtained with a
ticket (``preview.tickets``), or anyone when the project's ``settings.preview_public`` is
true. The session cookie never reaches the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.types import Message, Receive, Scope, Send

from persistence.db import Database
from preview import tickets
from preview.runtime import PreviewKey, PreviewRuntime, key_of
from server.access import project_access

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

COOKIE = "__icreate_preview"
SESSION_PATH = "/__icreate/session"
ACCESS_CACHE_S = 10.0
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
WS_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version",
                          b"sec-websocket-extensions", b"sec-websocket-protocol"})
PUBLIC_QUERY = """
select coalesce((settings ->> 'preview_public')::boolean, false)
from public.projects where id = $1
"""


class PreviewProxy:
    def __init__(self, runtime: PreviewRuntime, db: Database, jwt_secret: str) -> None:
        self.runtime = runtime
        self.db = db
        self.key = tickets.preview_key(jwt_secret)
        self._sessions: dict[PreviewKey, aiohttp.ClientSession] = {}
        self._access: dict[tuple[uuid.UUID | None, uuid.UUID], tuple[float, bool]] = {}
        self.requests = 0

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _session(self, key: PreviewKey) -> aiohttp.ClientSession:
        import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

        session = self._sessions.get(key)
        if session is None or session.closed:
            # No keep-alive: ``current`` may point at a new deployment for the next request.
            connector = aiohttp.UnixConnector(path=str(self.runtime.socket(key)),
                                              force_close=True)
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
            self._sessions[key] = session
        return session

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        key = key_of(host.split(".", 1)[0]) if "." in host else None
        if key is None:
            await _refuse(scope, receive, send, 404, "no such preview")
            return
        if scope["type"] == "http" and scope["path"] == SESSION_PATH:
            await self._open_session(scope, send, key)
            return
        user = self._session_user(headers, key)
        if not await self._allowed(user, key):
            await _refuse(scope, receive, send, 401,
                          "this preview is private: open it from the project in the IDE")
            return
        if self.runtime.socket(key).exists() is False:
            await _refuse(scope, receive, send, 503,
                          "this preview is not running: deploy it again from the IDE")
            return
        self.runtime.touch(key)
        self.requests += 1
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, key, headers)
        else:
            await self._http(scope, receive, send, key, host)

    # -- access --------------------------------------------------------------------------

    async def _open_session(self, scope: Scope, send: Send, key: PreviewKey) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = (query.get("next") or ["/"])[0]
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        try:
            grant = tickets.verify(self.key, (query.get("ticket") or [""])[0],
                                   audience=tickets.TICKET_AUDIENCE)
        except tickets.TicketError as exc:
            await _plain(send, 401, f"invalid or expired preview ticket: {exc}")
            return
        if (grant.project_id, grant.environment) != (key.project_id, key.environment):
            await _plain(send, 403, "this ticket is for another preview")
            return
        session = tickets.issue(self.key, grant, audience=tickets.SESSION_AUDIENCE,
                                ttl_s=tickets.SESSION_TTL_S)
        # The IDE shows the preview in a frame from another site: SameSite=None, and
        # Partitioned (CHIPS) so Chromium keeps it as the IDE's partitioned cookie instead of
        # dropping it as a third-party one. Secure is accepted on https and on *.localhost.
        cookie = (f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=None; Secure; Partitioned; "
                  f"Max-Age={tickets.SESSION_TTL_S}")
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", quote(target, safe="/?=&%#:;,+@!$'()*~-._").encode()),
            (b"set-cookie", cookie.encode()), (b"cache-control", b"no-store"),
            (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def _session_user(self, headers: dict[bytes, bytes], key: PreviewKey) -> uuid.UUID | None:
        raw = headers.get(b"cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        with contextlib.suppress(Exception):
            jar.load(raw.decode("latin-1"))
        morsel = jar.get(COOKIE)
        if morsel is None:
            return None
        try:
            grant = tickets.verify(self.key, morsel.value, audience=tickets.SESSION_AUDIENCE)
        except tickets.TicketError:
            return None
        if (grant.project_id, grant.environment) != (key.project_id, key.environment):
            return None
        return grant.user_id

    async def _allowed(self, user: uuid.UUID | None, key: PreviewKey) -> bool:
        """Members of the project (re-checked every ACCESS_CACHE_S), or anyone if public."""
        cache_key = (user, key.project_id)
        cached = self._access.get(cache_key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ACCESS_CACHE_S:
            return cached[1]
        async with self.db.service() as conn:
            public = bool(await conn.fetchval(PUBLIC_QUERY, key.project_id))
        allowed = public
        if not allowed and user is not None:
            access = await project_access(self.db, str(user), key.project_id)
            allowed = access is not None and access.role is not None
        if len(self._access) > 10_000:
            self._access.clear()
        self._access[cache_key] = (now, allowed)
        return allowed

    # -- HTTP ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send, key: PreviewKey,
                    host: str) -> None:
        import aiohttp  # deferred with _session()

        headers = _forward_headers(scope, host)
        has_body = any(k == "content-length" and v != "0" for k, v in headers) or any(
            k == "transfer-encoding" for k, v in _str_headers(scope))
        body = _request_body(receive) if has_body else None
        url = "http://preview" + _target(scope)
        try:
            async with self._session(key).request(
                scope["method"], url, headers=headers, data=body, allow_redirects=False,
            ) as upstream:
                out = [(k.lower(), v) for k, v in upstream.raw_headers
                       if k.lower() not in HOP_BY_HOP - {b"content-length"}]
                if key.environment == "development" and not upstream.headers.get(
                        "Cache-Control"):
                    out.append((b"cache-control", b"no-store"))
                await send({"type": "http.response.start", "status": upstream.status,
                            "headers": out})
                async for chunk in upstream.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            log.info("preview %s: %s", key, exc)
            with contextlib.suppress(RuntimeError, OSError):
                await _plain(send, 502, "the preview app did not answer")

    # -- WebSocket -----------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, key: PreviewKey,
                         headers: dict[bytes, bytes]) -> None:
        import aiohttp  # deferred with _session()

        first = await receive()
        if first["type"] != "websocket.connect":
            return
        forward = [(k, v) for k, v in _forward_headers(scope, headers[b"host"].decode())
                   if k.encode() not in WS_HANDSHAKE]
        protocols = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").decode(
            "latin-1").split(",") if p.strip()]
        try:
            upstream = await self._session(key).ws_connect(
                "http://preview" + _target(scope), headers=forward, protocols=protocols,
                autoping=True, max_msg_size=0)
        except (aiohttp.ClientError, aiohttp.WSServerHandshakeError) as exc:
            log.info("preview websocket %s: %s", key, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if upstream.protocol:
            accept["subprotocol"] = upstream.protocol
        await send(accept)
        await _pump_websocket(upstream, receive, send)


async def _pump_websocket(upstream: aiohttp.ClientWebSocketResponse, receive: Receive,
                          send: Send) -> None:
    import aiohttp  # deferred with _session()

    async def client_to_app() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def app_to_client() -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
        with contextlib.suppress(RuntimeError, OSError):
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    tasks = [asyncio.create_task(client_to_app()), asyncio.create_task(app_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


# -- helpers ---------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", [])}


def _str_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1"))
            for k, v in scope.get("headers", [])]


def _target(scope: Scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return bytes(path).decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


def _forward_headers(scope: Scope, host: str) -> list[tuple[str, str]]:
    """The request's headers minus hop-by-hop ones and our session cookie, plus who asked."""
    out: list[tuple[str, str]] = [("host", host)]
    for name, value in _str_headers(scope):
        if name.encode() in HOP_BY_HOP - {b"content-length"} or name.startswith("x-forwarded-"):
            continue
        if name == "cookie":
            value = _without_session(value)
            if not value:
                continue
        out.append((name, value))
    client = scope.get("client")
    if client:
        out.append(("x-forwarded-for", str(client[0])))
    out.append(("x-forwarded-proto", "https" if scope.get("scheme") in {"https", "wss"}
                else "http"))
    out.append(("x-forwarded-host", host))
    return out


def _without_session(cookie_header: str) -> str:
    kept = [part.strip() for part in cookie_header.split(";")
            if part.strip() and part.strip().split("=", 1)[0] != COOKIE]
    return "; ".join(kept)


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        # Accepted, then closed with 4000 + the HTTP status: a close before accept reaches
        # browsers as a bare 403/1006 and hides why.
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4000 + status, "reason": text[:120]})
        return
    await _plain(send, status, text)
