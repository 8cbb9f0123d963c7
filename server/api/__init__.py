"""The REST API under ``/api/v1``: the endpoint table, its routes, the OpenAPI document."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from server import __version__
from server.api import (
    ai_edits,
    analyses,
    analytics,
    auth,
    billing,
    chat,
    conversations,
    deployments,
    document_versions,
    executions,
    files,
    git,
    git_accounts,
    git_webhooks,
    integrations,
    me,
    members,
    oauth,
    operator,
    projects,
    sessions,
    uploads,
    variables,
    versions,
    workspaces,
)
from server.api.openapi import openapi_document
from server.api.routing import Endpoint, to_routes
from server.middleware import browser_guards

OPENAPI_PATH = "/openapi.json"
# Where app.py mounts this API (the route templates api_logs records start with it).
API_ROOT = "/api/v1"


def endpoints() -> list[Endpoint]:
    return [
        *auth.ENDPOINTS,
        *me.ENDPOINTS,
        *sessions.ENDPOINTS,
        *workspaces.ENDPOINTS,
        *members.ENDPOINTS,
        *projects.ENDPOINTS,
        *files.ENDPOINTS,
        *uploads.ENDPOINTS,
        *git.ENDPOINTS,
        *git_accounts.ENDPOINTS,
        *git_webhooks.ENDPOINTS,
        *versions.ENDPOINTS,
        *document_versions.ENDPOINTS,
        *conversations.ENDPOINTS,
        *chat.ENDPOINTS,
        *analyses.ENDPOINTS,
        *ai_edits.ENDPOINTS,
        *executions.ENDPOINTS,
        *oauth.ENDPOINTS,
        *variables.ENDPOINTS,
        *deployments.ENDPOINTS,
        *integrations.ENDPOINTS,
        *analytics.ENDPOINTS,
        *operator.ENDPOINTS,
        *billing.ENDPOINTS,
    ]


@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    return openapi_document(endpoints(), title="iCreateTechs API", version=__version__)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi())


def api_routes() -> list[BaseRoute]:
    # Endpoints that stream their own body are served by their own route (uploads_route).
    served = [e for e in endpoints() if not e.own_route]
    return [
        *to_routes(served, API_ROOT),
        Route(OPENAPI_PATH, openapi_json, methods=["GET"]),
    ]


class ApiApp:
    """The API router behind the browser guards (built on first use from the app's settings)."""

    def __init__(self) -> None:
        self.router = Router(routes=api_routes())
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = browser_guards(self.router, scope["app"].state.settings)
        await self._app(scope, receive, send)


def api_app() -> ApiApp:
    return ApiApp()
