"""Push webhooks: verified on the raw body, stored before processing, deduplicated by
delivery id, turned into a pull job (GitHub, GitLab, Bitbucket Cloud)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import aiohttp
import pytest

from persistence.db import Database
from tests.fakes.git_http import GitHost
from tests.gitsync.helpers import Stage


def _github(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}


def _gitlab(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    return {"X-Gitlab-Token": secret, "X-Gitlab-Event": event,
            "X-Gitlab-Event-UUID": delivery, "Content-Type": "application/json"}


def _bitbucket(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature": f"sha256={digest}", "X-Event-Key": event,
            "X-Request-UUID": delivery, "Content-Type": "application/json"}


PUSHES: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "github": (_github, "push", {"ref": "refs/heads/main", "after": "0" * 40,
                                  "repository": {"full_name": "acme/hooks"}}),
    "gitlab": (_gitlab, "Push Hook", {"object_kind": "push", "ref": "refs/heads/main"}),
    "bitbucket": (_bitbucket, "repo:push", {"push": {"changes": [
        {"new": {"type": "branch", "name": "main"}, "old": {"type": "branch", "name": "main"}}
    ]}}),
}


async def _post(stage: Stage, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=body, headers=headers
    ) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize("provider", ["github", "gitlab", "bitbucket"])
async def test_a_verified_push_becomes_one_pull(
    stage: Stage, git_host: GitHost, db: Database, provider: str
) -> None:
    git_host.create("acme/hooks", {"README.md": "v1\n"}, token="tok")
    connected = await stage.connect(git_host.url("acme/hooks"), token="tok", provider=provider)
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    hook = connected["webhook"]
    sign, event, payload = PUSHES[provider]
    git_host.commit("acme/hooks", {"README.md": "v2\n"})
    body = json.dumps(payload).encode()
    delivery = str(uuid.uuid4())

    # A wrong secret or a body changed after signing: 401, nothing stored.
    status, reply = await _post(stage, hook["url"], body, sign("wrong", body, event, delivery))
    assert (status, reply["error"]["code"]) == (401, "invalid_signature")
    status, _ = await _post(stage, hook["url"], body + b" ",
                            sign(hook["secret"], body, event, delivery))
    assert status == 401 or provider == "gitlab"  # GitLab signs nothing: its token is the proof
    async with db.acquire() as conn:
        await conn.execute("delete from public.webhook_logs")

    status, reply = await _post(stage, hook["url"], body, sign(hook["secret"], body, event,
                                                                delivery))
    assert status == 200 and reply["status"] == "queued", reply
    job = await stage.job(reply["job_id"])
    assert job["status"] == "completed" and job["job_name"] == "git.pull"
    readme = (await stage.tree())["README.md"]["id"]
    assert await stage.text(readme) == "v2\n"
    # The delivery was stored (before processing) and marked processed with the job.
    async with db.acquire() as conn:
        rows = await conn.fetch("select provider, event_type, payload, status, response,"
                                " event_id, processed_at from public.webhook_logs")
    assert len(rows) == 1
    row = rows[0]
    assert (row["provider"], row["event_type"], row["event_id"]) == (provider, event, delivery)
    assert row["payload"] == payload and row["status"] == "processed"
    assert row["response"]["job_id"] == reply["job_id"] and row["processed_at"] is not None
    # A redelivery of the same id: acknowledged, not stored or queued again.
    status, again = await _post(stage, hook["url"], body, sign(hook["secret"], body, event,
                                                                delivery))
    assert (status, again) == (200, {"status": "duplicate"})
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.webhook_logs") == 1
        assert await conn.fetchval(
            "select count(*) from public.background_jobs where job_name = 'git.pull'") == 1


async def test_other_events_and_branches_are_logged_and_ignored(
    stage: Stage, git_host: GitHost, db: Database
) -> None:
    git_host.create("acme/hooks", {"README.md": "v1\n"}, token="tok")
    connected = await stage.connect(git_host.url("acme/hooks"), token="tok")
    hook = connected["webhook"]
    for event, payload, reason in (
        ("ping", {"zen": "Design for failure."}, "not a push"),
        ("push", {"ref": "refs/heads/feature"}, "another branch"),
    ):
        body = json.dumps(payload).encode()
        status, reply = await _post(stage, hook["url"], body,
                                    _github(hook["secret"], body, event, str(uuid.uuid4())))
        assert status == 200 and reply == {"status": "ignored", "reason": reason}
    # Unknown repository, missing delivery id, a body that is not JSON.
    body = b"{}"
    status, _ = await _post(stage, hook["url"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}", body,
                            _github(hook["secret"], body, "push", "d"))
    assert status == 404
    headers = _github(hook["secret"], body, "push", "d")
    del headers["X-GitHub-Delivery"]
    status, reply = await _post(stage, hook["url"], body, headers)
    assert (status, reply["error"]["code"]) == (400, "invalid_delivery")
    status, reply = await _post(stage, hook["url"], b"payload=x",
                                _github(hook["secret"], b"payload=x", "push", "e"))
    assert (status, reply["error"]["code"]) == (400, "invalid_payload")
    # A new secret replaces the old one.
    rotated = await stage.api.ok("POST", f"/projects/{stage.project_id}/git/webhook-secret",
                                 token=stage.owner.token)
    assert rotated["secret"] != hook["secret"]
    body = json.dumps({"zen": "x"}).encode()
    status, _ = await _post(stage, hook["url"], body,
                            _github(hook["secret"], body, "ping", str(uuid.uuid4())))
    assert status == 401
    status, _ = await _post(stage, hook["url"], body,
                            _github(rotated["secret"], body, "ping", str(uuid.uuid4())))
    assert status == 200
    async with db.acquire() as conn:
        statuses = await conn.fetch("select status from public.webhook_logs")
    assert {r["status"] for r in statuses} == {"processed"} and len(statuses) == 3
