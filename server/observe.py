"""The request observer: pure ASGI middleware feeding api_logs, timings and error_logs.

For each REST request (paths under ``/api/``) it measures the duration until the last body
byte is sent, the status, and the request/response body sizes, then appends one entry to the
api_logs buffer and one latency sample per route and for all routes. Handlers fill in what
only they know (route template, user, workspace, project) on the ``RequestFacts`` the
observer puts in the scope. Nothing here awaits anything but the app itself.

What is recorded never includes a credential: the route template (not the raw path or query
string), no header but the user agent, no body. Exceptions escaping a REST or socket handler
are reported to error_logs with the same facts, then re-raised (Starlette answers 500).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.service import Observability
from observability.timings import API_LATENCY

FACTS_KEY = "icreate.request_facts"
API_PREFIX = "/api/"
UNMATCHED = "unmatched"
ALL_ROUTES = (("route", "*"),)


@dataclass(slots=True)
class RequestFacts:
    route: str | None = None
    user_id: str | None = None
    workspace_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None


def request_facts(scope: Scope) -> RequestFacts:
    """The facts of this request (a throwaway object outside the observer, e.g. in tests)."""
    facts = scope.get(FACTS_KEY)
    return facts if isinstance(facts, RequestFacts) else RequestFacts()


def _headers(scope: Scope) -> tuple[str | None, int | None]:
    agent: str | None = None
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = value.decode("latin-1")
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    return agent, length


class RequestObserver:
    def __init__(self, app: ASGIApp, observability: Observability) -> None:
        self.app = app
        self.observability = observability

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"].startswith(API_PREFIX):
            await self._http(scope, receive, send)
        elif kind == "websocket":
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                self._report(exc, scope, {"kind": "websocket", "path": scope["path"]})
                raise
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started_wall = time.time()
        started = time.perf_counter()
        facts = RequestFacts()
        scope[FACTS_KEY] = facts
        agent, request_bytes = _headers(scope)
        status = 0
        response_bytes = 0
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            body = message.get("body")
            if body:
                received += len(body)
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                body = message.get("body")
                if body:
                    response_bytes += len(body)
            await send(message)

        try:
            # A declared length is the size; only chunked bodies are counted as they arrive.
            await self.app(scope, receive if request_bytes is not None else counting_receive,
                           observing_send)
        except Exception as exc:
            status = status or 500
            self._report(exc, scope, {"kind": "http", "method": scope["method"],
                                      "route": facts.route or UNMATCHED, "status": status})
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            route = facts.route or UNMATCHED
            method = scope["method"]
            client = scope.get("client")
            observability = self.observability
            observability.log_request((
                started_wall, facts.user_id, facts.workspace_id, route, method, status,
                round(duration_ms), client[0] if client else None, agent,
                request_bytes if request_bytes is not None else received, response_bytes,
            ))
            timings = observability.timings
            timings.observe(API_LATENCY, "http.server.duration", duration_ms,
                            tags=(("route", f"{method} {route}"),))
            timings.observe(API_LATENCY, "http.server.duration", duration_ms, tags=ALL_ROUTES)

    def _report(self, exc: Exception, scope: Scope, context: dict[str, object]) -> None:
        errors = self.observability.errors
        if errors is None:
            return
        facts = request_facts(scope)
        errors.report(exc, context=context, user_id=facts.user_id, project_id=facts.project_id)
