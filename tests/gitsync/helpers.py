"""Test helpers: a project with two members, connecting it, waiting for git jobs."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tests.api.client import Api, User
from tests.support.servers import LiveServer


@dataclass
class Stage:
    api: Api
    server: LiveServer
    owner: User
    member: User
    workspace_id: str
    project_id: str

    async def call(self, method: str, path: str, body: Any = None, *,
                   user: User | None = None) -> Any:
        reply = await self.api.call(method, path, body, token=(user or self.owner).token)
        return reply

    async def connect(self, url: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
        body = {"repo_url": url, "provider": "github", **extra}
        if token is not None:
            body["token"] = token
        reply = await self.call("POST", f"/projects/{self.project_id}/git", body)
        assert reply.status == 201, reply.body
        result: dict[str, Any] = reply.body
        return result

    async def job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        """The job once it finished (completed or failed), polled with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.call("GET", f"/projects/{self.project_id}/git/jobs/{job_id}")
            assert reply.status == 200, reply.body
            if reply.body["status"] in ("completed", "failed"):
                return dict(reply.body)
            assert time.monotonic() < deadline, f"job {job_id} still {reply.body['status']}"
            await asyncio.sleep(0.1)

    async def pull(self, user: User | None = None) -> dict[str, Any]:
        reply = await self.call("POST", f"/projects/{self.project_id}/git/pull", user=user)
        assert reply.status == 202, reply.body
        return await self.job(reply.body["job_id"])

    async def push(self, message: str, branch: str | None = None,
                   user: User | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": message}
        if branch is not None:
            body["branch"] = branch
        reply = await self.call("POST", f"/projects/{self.project_id}/git/push", body,
                                user=user)
        assert reply.status == 202, reply.body
        return await self.job(reply.body["job_id"])

    async def repository(self) -> dict[str, Any]:
        reply = await self.call("GET", f"/projects/{self.project_id}/git")
        assert reply.status == 200 and reply.body["repository"] is not None, reply.body
        return dict(reply.body["repository"])

    async def tree(self) -> dict[str, dict[str, Any]]:
        items = await self.api.all_pages(f"/projects/{self.project_id}/files",
                                         token=self.owner.token, limit=200)
        return {f["path"]: f for f in items}

    async def text(self, file_id: str) -> str:
        reply = await self.call("GET", f"/files/{file_id}")
        assert reply.status == 200, reply.body
        return str(reply.body["content"])


async def make_stage(api: Api, server: LiveServer) -> Stage:
    owner = await api.sign_up(f"owner-{uuid.uuid4().hex[:6]}@example.test")
    member = await api.sign_up(f"member-{uuid.uuid4().hex[:6]}@example.test")
    ws = await api.ok("POST", "/workspaces", {"name": "Git"}, token=owner.token)
    await api.ok("POST", f"/workspaces/{ws['id']}/members",
                 {"email": member.email, "role": "member"}, token=owner.token)
    project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "Repo"},
                           token=owner.token)
    return Stage(api, server, owner, member, ws["id"], project["id"])
