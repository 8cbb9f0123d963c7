"""The REST API under ``/api/v1``: the endpoint table, its routes, the OpenAPI document."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route, Router
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


def _shape(path: str) -> tuple[str, int]:
    """A path's first segment and its number of segments."""
    parts = path.split("/")
    return parts[1] if len(parts) > 1 else "", len(parts)


def _route_path(scope: Scope) -> str:
    """The path below where this app is mounted (what the routes match)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


class IndexedRouter:
    """Starlette's ``Router``, but a path first tries only the routes of its shape (same
    first segment, same number of segments) instead of every route in order: the API has
    about 70, and matching each one's pattern in turn cost more than the rest of routing.

    Only routes whose first segment is literal and whose parameters stay within one segment
    are indexed; a path with no full match among them (unknown path, trailing slash, another
    shape) goes to the ``Router`` itself, so 404s and redirects are Starlette's.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        index: dict[tuple[str, int], list[Route]] = {}
        unindexed: set[str] = set()
        for route in router.routes:
            if isinstance(route, Route) and ":path}" not in route.path:
                index.setdefault(_shape(route.path), []).append(route)
            else:
                unindexed.add(_shape(getattr(route, "path", "/"))[0])
        # A first segment that an unindexed route may also serve is left to the router.
        self.index = {key: routes for key, routes in index.items() if key[0] not in unindexed
                      and "{" not in key[0]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            candidates = self.index.get(_shape(_route_path(scope)))
            if candidates is not None:
                for route in candidates:
                    match, child_scope = route.matches(scope)
                    if match is Match.FULL:
                        scope.setdefault("router", self.router)
                        scope["route"] = route
                        scope.update(child_scope)
                        await route.handle(scope, receive, send)
                        return
        await self.router(scope, receive, send)


class ApiApp:
    """The API router behind the browser guards (built on first use from the app's settings)."""

    def __init__(self) -> None:
        self.router = Router(routes=api_routes())
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = browser_guards(IndexedRouter(self.router), scope["app"].state.settings)
        await self._app(scope, receive, send)


def api_app() -> ApiApp:
    return ApiApp()
