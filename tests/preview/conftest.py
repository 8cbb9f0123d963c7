"""A live server with previews, a workspace of four roles, and helpers to deploy, wait and
request a preview through the preview origin (a real HTTP client on its port, with the
preview's host name: ``<label>.localhost:<port>``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from persistence.db import Database
from preview.config import PreviewConfig
from preview.runtime import PreviewKey, label_of
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


@dataclass
class World:
    owner: uuid.UUID
    member: uuid.UUID
    viewer: uuid.UUID
    stranger: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID


def token(user: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, user_id=str(user), email=f"{user}@example.test",
                              ttl_s=3600)


@pytest.fixture
async def world(db: Database) -> World:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        member = await factories.create_user(conn)
        viewer = await factories.create_user(conn)
        stranger = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, member, "member")
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
        other = await factories.create_project(conn, await factories.create_workspace(conn,
                                                                                      stranger))
    return World(owner, member, viewer, stranger, project, other)


@pytest.fixture
def preview_settings(settings: Settings, exec_root: Any) -> Settings:
    execution = dataclasses.replace(settings.execution, max_processes=64)
    return dataclasses.replace(settings, execution=execution, preview=PreviewConfig(
        port=0, start_timeout_s=20, build_timeout_s=120, watch_interval_s=0.1,
        rescan_interval_s=1.0))


class Client:
    """The REST API and the preview origin of one live server."""

    def __init__(self, server: LiveServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        previews = server.app.state.services.previews
        self.previews = previews
        self.origin_port = urlsplit(previews.runtime.origin).port

    async def api(self, method: str, path: str, user: uuid.UUID, body: Any = None
                  ) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.server.url}/api/v1{path}", json=body,
                                     headers={"Authorization": f"Bearer {token(user)}"}) as r:
            return r.status, await r.json(content_type=None)

    async def deploy(self, user: uuid.UUID, project: uuid.UUID,
                     environment: str = "development", **extra: Any) -> dict[str, Any]:
        status, body = await self.api("POST", f"/projects/{project}/deployments", user,
                                      {"environment": environment, **extra})
        assert status == 202, body
        return dict(body)

    async def wait(self, user: uuid.UUID, project: uuid.UUID, deployment_id: str,
                   statuses: tuple[str, ...] = ("success", "failed", "canceled"),
                   timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.api(
                "GET", f"/projects/{project}/deployments/{deployment_id}", user)
            assert status == 200, body
            if body["status"] in statuses:
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"still {body['status']}: {body.get('logs')}")
            await asyncio.sleep(0.1)

    def host(self, project: uuid.UUID, environment: str = "development") -> str:
        return f"{label_of(PreviewKey(project, environment))}.localhost:{self.origin_port}"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.origin_port}{path}"

    async def session_cookie(self, user: uuid.UUID, project: uuid.UUID,
                             environment: str = "development") -> str:
        status, body = await self.api("POST", f"/projects/{project}/preview-sessions", user,
                                      {"environment": environment})
        assert status == 201, body
        ticket_url = urlsplit(body["url"])
        async with self.http.get(self.url(f"{ticket_url.path}?{ticket_url.query}"),
                                 headers={"Host": ticket_url.netloc},
                                 allow_redirects=False) as reply:
            assert reply.status == 303, await reply.text()
            cookie = reply.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        return cookie.split(";", 1)[0]

    async def get(self, project: uuid.UUID, path: str = "/", *, cookie: str | None = None,
                  environment: str = "development") -> tuple[int, str]:
        headers = {"Host": self.host(project, environment)}
        if cookie:
            headers["Cookie"] = cookie
        async with self.http.get(self.url(path), headers=headers) as reply:
            return reply.status, await reply.text()


@pytest.fixture
async def client(live_server: StartServer, preview_settings: Settings
                 ) -> AsyncIterator[Client]:
    server = await live_server(preview_settings)
    async with aiohttp.ClientSession() as http:
        yield Client(server, http)


async def add_files(db: Database, project: uuid.UUID,
                    files: dict[str, str]) -> dict[str, uuid.UUID]:
    ids = {}
    async with db.service() as conn:
        for path, content in files.items():
            ids[path] = await factories.create_file(conn, project, path, content)
    return ids


__all__ = ["Client", "World", "add_files", "token"]
