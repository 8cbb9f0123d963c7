"""The permission matrix: every endpoint x owner/admin/member/viewer/outsider/anonymous.

Expected: anonymous 401, outsider 404 (existence is not revealed), a role below the
endpoint's minimum 403, the minimum role and above 2xx. Mutating endpoints get a fresh
target per attempt from their ``setup``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from persistence.db import Database
from server.access import ROLE_RANK
from server.api import endpoints
from tests.api.client import Api
from tests.api.world import ROLES, World, build_world
from tests.support import factories

Setup = Callable[[World, Database], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # formatted with the world's ids and the setup's extras
    min_role: str
    body: Any = None
    setup: Setup | None = None
    allowed: str = "2xx"  # what the minimum role and above get


async def fresh_workspace(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        ws = await factories.create_workspace(conn, uuid.UUID(world.users["owner"].id))
        for role in ROLES[1:]:
            await factories.add_member(conn, ws, uuid.UUID(world.users[role].id), role)
    return {"ws": ws}


async def fresh_project(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        return {"project": await factories.create_project(conn, world.workspace_id)}


async def fresh_file(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        path = f"tmp-{uuid.uuid4().hex[:8]}.txt"
        return {"file": await factories.create_file(conn, world.project_id, path, "x")}


async def running_edit(world: World, db: Database) -> dict[str, Any]:
    """An AI edit's record (running, held by no process here: a cancel goes to the broker)."""
    async with db.service() as conn:
        edit = await conn.fetchval(
            "insert into public.ai_jobs (user_id, project_id, job_type, status, input) "
            "select w.owner_id, $1, 'refactor', 'running', $2 from public.projects p "
            "join public.workspaces w on w.id = p.workspace_id where p.id = $1 returning id",
            world.project_id, {"file_id": str(uuid.uuid4())})
    return {"edit": edit}


async def fresh_deleted_file(world: World, db: Database) -> dict[str, Any]:
    extra = await fresh_file(world, db)
    async with db.service() as conn:
        await conn.execute("update public.files set is_deleted = true where id = $1", extra["file"])
    return extra


async def fresh_member(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        await factories.add_member(conn, world.workspace_id, user, "member")
    return {"target": user}


async def fresh_stranger(world: World, db: Database) -> dict[str, Any]:
    email = f"invitee-{uuid.uuid4().hex[:8]}@example.test"
    async with db.service() as conn:
        await factories.create_user(conn, email)
    return {"email": email}


async def fresh_conversation(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        owner = uuid.UUID(world.users["owner"].id)
        return {"conv": await factories.create_conversation(conn, world.project_id, owner)}


async def fresh_repository(world: World, db: Database) -> dict[str, Any]:
    """A connected repository (at a closed local port: its jobs fail, nothing leaves the
    machine) and a finished git job of it."""
    async with db.service() as conn:
        await conn.execute("delete from public.git_repositories where project_id = $1",
                           world.project_id)
        repository = await conn.fetchval(
            "insert into public.git_repositories (project_id, provider, repo_url,"
            " default_branch, sync_status) values ($1, 'github',"
            " 'https://127.0.0.1:9/acme/none', 'main', 'idle') returning id", world.project_id)
        job = await conn.fetchval(
            "insert into public.background_jobs (job_name, job_type, input, status)"
            " values ('git.pull', 'sync', $1, 'completed') returning id",
            {"repository_id": str(repository)})
    return {"job": job}


async def fresh_deployment(world: World, db: Database, status: str = "failed"
                           ) -> dict[str, Any]:
    """A deployment row (Vercel target: its jobs need no sandbox); unfinished ones of the
    project are canceled first (one unfinished per project, environment and target)."""
    async with db.service() as conn:
        await conn.execute("update public.deployments set status = 'canceled' where project_id"
                           " = $1 and status in ('pending', 'building', 'deploying')",
                           world.project_id)
        deployment = await conn.fetchval(
            "insert into public.deployments (project_id, environment, status, target)"
            " values ($1, 'staging', $2, 'vercel') returning id", world.project_id, status)
    return {"deployment": deployment}


async def pending_deployment(world: World, db: Database) -> dict[str, Any]:
    return await fresh_deployment(world, db, "pending")


async def successful_deployment(world: World, db: Database) -> dict[str, Any]:
    return await fresh_deployment(world, db, "success")


async def unique_name(world: World, db: Database) -> dict[str, Any]:
    return {"name": f"n-{uuid.uuid4().hex[:8]}.py"}


async def unique_key(world: World, db: Database) -> dict[str, Any]:
    return {"key": f"K_{uuid.uuid4().hex[:8]}"}


async def fresh_variable(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        variable = await conn.fetchval(
            "insert into public.environment_variables (project_id, key, value_encrypted,"
            " environment, created_by) values ($1, $2, 'v1:none:x', 'development', $3)"
            " returning id", world.project_id, f"K_{uuid.uuid4().hex[:8]}",
            uuid.UUID(world.users["owner"].id),
        )
    return {"var": variable}


async def fresh_integration(world: World, db: Database) -> dict[str, Any]:
    async with db.service() as conn:
        await conn.execute(
            "insert into public.api_integrations (user_id, workspace_id, provider,"
            " api_key_encrypted) values ($1, $2, 'vercel', 'v1:none:x') on conflict do nothing",
            uuid.UUID(world.users["owner"].id), world.workspace_id,
        )
    return {}


CASES = [
    Case("GET", "/workspaces/{ws}", "viewer"),
    Case("PATCH", "/workspaces/{ws}", "admin", {"description": "changed"}),
    Case("POST", "/workspaces/{ws}/deactivate", "owner", setup=fresh_workspace),
    Case("DELETE", "/workspaces/{ws}", "owner", setup=fresh_workspace),
    Case("GET", "/workspaces/{ws}/members", "viewer"),
    Case("POST", "/workspaces/{ws}/members", "admin", {"email": "{email}", "role": "viewer"},
         setup=fresh_stranger),
    Case("PATCH", "/workspaces/{ws}/members/{target}", "admin", {"role": "viewer"},
         setup=fresh_member),
    Case("DELETE", "/workspaces/{ws}/members/{target}", "admin", setup=fresh_member),
    Case("POST", "/workspaces/{ws}/projects", "member", {"name": "Made"}),
    Case("GET", "/workspaces/{ws}/projects", "viewer"),
    Case("GET", "/projects/{project}", "viewer"),
    Case("PATCH", "/projects/{project}", "member", {"description": "changed"}),
    Case("DELETE", "/projects/{project}", "admin", setup=fresh_project),
    Case("GET", "/projects/{project}/files", "viewer"),
    Case("POST", "/projects/{project}/files", "member", {"path": "src/{name}"},
         setup=unique_name),
    Case("POST", "/projects/{project}/conversations", "member", {"title": "Mine"}),
    Case("GET", "/projects/{project}/conversations", "viewer"),
    Case("GET", "/files/{file}", "viewer"),
    Case("GET", "/files/{file}/download", "viewer"),
    Case("POST", "/projects/{project}/uploads?path=up/{name}", "member", {"raw": "bytes"},
         setup=unique_name),
    Case("PATCH", "/files/{file}", "member", {"name": "{name}"}, setup=unique_name),
    Case("PUT", "/files/{file}/content", "member", {"content": "print('bye')\n"}),
    Case("DELETE", "/files/{file}", "member", setup=fresh_file),
    Case("POST", "/files/{file}/restore", "member", setup=fresh_deleted_file),
    Case("GET", "/files/{file}/versions", "viewer"),
    Case("GET", "/files/{file}/versions/1", "viewer"),
    Case("POST", "/files/{file}/versions/1/restore", "member"),
    Case("GET", "/conversations/{conv}", "viewer"),
    # Only the author (here the owner) or an admin changes a conversation.
    Case("PATCH", "/conversations/{conv}", "admin", {"title": "Renamed"}),
    Case("POST", "/conversations/{conv}/archive", "admin", setup=fresh_conversation),
    Case("GET", "/conversations/{conv}/messages", "viewer"),
    # Authorized callers reach the assistant's own check (blank question): no model runs.
    Case("POST", "/conversations/{conv}/messages", "member", {"content": "   "},
         allowed="400"),
    Case("POST", "/files/{file}/save", "member", {"change_message": "checkpoint"}),
    # The assistant's analyses and edits. Authorized callers reach the service's own checks:
    # a file no analyser reads (422), no AI provider in this test (503); no model runs.
    Case("POST", "/files/{file}/analyses", "member", {"type": "security"},
         setup=fresh_file, allowed="422"),  # a .txt file
    Case("GET", "/files/{file}/analyses", "viewer"),
    Case("POST", "/files/{file}/ai-edits", "member", {"instruction": "tidy"}, allowed="503"),
    Case("GET", "/ai-edits/{edit}", "viewer", setup=running_edit),
    Case("POST", "/ai-edits/{edit}/cancel", "member", {"keep": True}, setup=running_edit),
    # Authorized callers reach body validation (no language): no code runs in this test.
    Case("POST", "/projects/{project}/executions", "member", {"source_code": "print(1)"},
         allowed="422"),
    Case("GET", "/executions/{run}", "viewer"),
    # Authorized callers reach URL validation (a host not allowed): nothing is fetched.
    Case("POST", "/projects/{project}/git", "member", {"repo_url": "https://nowhere.test/a/b"},
         allowed="422"),
    Case("GET", "/projects/{project}/git", "viewer", setup=fresh_repository),
    Case("DELETE", "/projects/{project}/git", "member", setup=fresh_repository),
    Case("POST", "/projects/{project}/git/pull", "member", setup=fresh_repository),
    Case("POST", "/projects/{project}/git/push", "member", {"message": "m"},
         setup=fresh_repository),
    Case("POST", "/projects/{project}/git/webhook-secret", "member", setup=fresh_repository),
    Case("GET", "/projects/{project}/git/jobs/{job}", "viewer", setup=fresh_repository),
    Case("GET", "/executions/{run}/events", "viewer"),
    # Environment variables: members (development and staging; see test_variables).
    Case("GET", "/projects/{project}/environment-variables", "member"),
    Case("POST", "/projects/{project}/environment-variables", "member",
         {"key": "{key}", "value": "v"}, setup=unique_key),
    Case("PATCH", "/projects/{project}/environment-variables/{var}", "member",
         {"value": "changed"}, setup=fresh_variable),
    Case("DELETE", "/projects/{project}/environment-variables/{var}", "member",
         setup=fresh_variable),
    # Deployments (tests/preview): members deploy (Vercel without a token here: the job
    # fails at once, nothing runs) and cancel; admins promote, roll back and open previews
    # to the public; viewers read and open previews.
    Case("POST", "/projects/{project}/deployments", "member",
         {"environment": "staging", "target": "vercel"}),
    Case("GET", "/projects/{project}/deployments", "viewer"),
    Case("GET", "/projects/{project}/deployments/{deployment}", "viewer",
         setup=fresh_deployment),
    Case("POST", "/projects/{project}/deployments/{deployment}/cancel", "member",
         setup=pending_deployment),
    # Authorized callers reach the target (a Vercel deployment without its id): 409.
    Case("POST", "/projects/{project}/deployments/{deployment}/promote", "admin",
         setup=successful_deployment, allowed="409"),
    Case("POST", "/projects/{project}/deployments/rollback", "admin",
         {"environment": "production"}, allowed="409"),
    Case("POST", "/projects/{project}/preview-sessions", "viewer", {}),
    Case("PUT", "/projects/{project}/preview-access", "admin", {"public": False}),
    # Workspace keys: admins. An unknown provider: no provider is called from this test.
    Case("GET", "/workspaces/{ws}/integrations", "admin"),
    Case("PUT", "/workspaces/{ws}/integrations/slack", "admin", {"api_key": "long-enough-key"},
         allowed="404"),
    Case("DELETE", "/workspaces/{ws}/integrations/vercel", "admin", setup=fresh_integration),
    # The operator page's series of a workspace: its admins (and owners).
    Case("GET", "/operator/series?workspace_id={ws}&minutes=5", "admin"),
]
# Not scoped to an existing object: the caller's own account and workspaces (tested in
# test_auth and test_workspace_life; anonymous gets 401 there), or public.
ACCOUNT_ENDPOINTS = {
    ("GET", "/workspaces"),
    ("POST", "/workspaces"),
    ("POST", "/auth/signup"),
    ("POST", "/auth/signin"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/signout"),
    ("GET", "/me"),
    ("PATCH", "/me"),
    ("GET", "/me/sessions"),
    ("DELETE", "/me/sessions/{session_id}"),
    ("GET", "/languages"),
    # Authenticated by the repository's webhook secret (tests/gitsync/test_webhooks.py).
    ("POST", "/git/webhooks/{repository_id}"),
    # The caller's own connected account (tests/gitsync/test_accounts.py).
    ("GET", "/git/accounts/{provider}/repositories"),
    # OAuth sign-in and the caller's own connections (tested in test_oauth).
    ("GET", "/auth/providers"),
    ("POST", "/auth/oauth/{provider}/start"),
    ("GET", "/auth/oauth/{provider}/callback"),
    ("POST", "/auth/oauth/exchange"),
    ("GET", "/me/connections"),
    ("DELETE", "/me/connections/{provider}"),
    # The caller's own events (a project named in the body is checked: test_analytics) and
    # what the caller may watch (test_operator).
    ("POST", "/analytics/events"),
    ("GET", "/operator/scopes"),
    # Plans are public; billing is the caller's own (they pay for the workspaces they own;
    # tests/billing), and Stripe's webhook is authenticated by its signature.
    ("GET", "/plans"),
    ("GET", "/billing/usage"),
    ("POST", "/billing/checkout"),
    ("POST", "/billing/portal"),
    ("GET", "/billing/invoices"),
    ("POST", "/webhooks/stripe"),
}
PLACEHOLDERS = {
    "{ws}": "{workspace_id}",
    "{project}": "{project_id}",
    "{file}": "{file_id}",
    "{conv}": "{conversation_id}",
    "{target}": "{user_id}",
    "{run}": "{execution_id}",
    "{job}": "{job_id}",
    "{var}": "{variable_id}",
    "{edit}": "{edit_id}",
    "{deployment}": "{deployment_id}",
    "/vercel": "/{provider}",
    "/slack": "/{provider}",
    "/1": "/{version_number}",
}


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**{k: str(v) for k, v in ids.items()})
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _route_of(case: Case) -> tuple[str, str]:
    path = case.path.split("?")[0]
    for short, name in PLACEHOLDERS.items():
        path = path.replace(short, name)
    return case.method, path


def test_every_endpoint_is_in_the_matrix() -> None:
    covered = {_route_of(case) for case in CASES} | ACCOUNT_ENDPOINTS
    assert {(e.method, e.path) for e in endpoints()} == covered


async def test_permission_matrix(api: Api, db: Database) -> None:
    world = await build_world(api, db)
    # Every attempt of a creating endpoint creates: the owner's plan must not be the limit here
    # (limits are tests/billing's).
    async with db.service() as conn:
        await factories.subscribe(conn, uuid.UUID(world.users["owner"].id), "team")
    base = {
        "ws": world.workspace_id,
        "project": world.project_id,
        "file": world.file_id,
        "conv": world.conversation_id,
        "run": world.execution_id,
    }
    failures: list[str] = []
    for case in CASES:
        for who in (None, "outsider", *ROLES):
            ids = dict(base)
            if case.setup is not None:
                ids.update(await case.setup(world, db))
            token = world.users[who].token if who else None
            reply = await api.call(
                case.method, _fill(case.path, ids), _fill(case.body, ids), token=token
            )
            if who is None:
                expected = "401"
            elif who == "outsider":
                expected = "404"
            elif ROLE_RANK[who] < ROLE_RANK[case.min_role]:
                expected = "403"
            else:
                expected = case.allowed
            got = "2xx" if 200 <= reply.status < 300 else str(reply.status)
            if got != expected or (expected != "2xx" and reply.error_code is None):
                failures.append(
                    f"{case.method} {case.path} as {who or 'anonymous'}: "
                    f"expected {expected}, got {reply.status} {reply.body}"
                )
    assert not failures, "\n".join(failures)
