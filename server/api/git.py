"""A project's git repository over REST: connect (and import), status, pull, push, jobs.

Long work runs as jobs (``gitsync.jobs``); these endpoints authorize, validate and
enqueue in the same transaction as the change that asks for it, and answer 202 with the
job's id. Progress and results arrive on the project channel (``git.*`` events) and in
``GET /projects/{id}/git`` (``sync_status``, ``last_sync_at``, ``last_error``). Secrets
(the token given at connect, the webhook secret) are encrypted at once and never
returned, except the webhook secret right after it is made (the provider needs it).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import jobs
from gitsync import jobs as git_jobs
from gitsync import urls
from gitsync.repo import ls_remote
from gitsync.runner import Credentials, GitError
from gitsync.sync import GitRuntime, credentials_context, webhook_context
from persistence import git as store
from server.api.guards import require_project
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, conflict, not_found

SELECT_GIT_JOB = """
select id, job_name, status, attempts, max_attempts, output, error, created_at, completed_at
from public.background_jobs
where id = $1 and job_name like 'git.%' and input ->> 'repository_id' = $2::text
"""


class GitConnect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo_url: str = Field(min_length=8, max_length=2048)
    # Needed when the host is not github.com, gitlab.com or bitbucket.org (self-hosted).
    provider: Literal["github", "gitlab", "bitbucket"] | None = None
    # A personal or project access token (encrypted at once, never returned) ...
    token: str | None = Field(None, min_length=1, max_length=4096)
    username: str | None = Field(None, min_length=1, max_length=200)
    # ... or the signed-in user's connected account at the provider.
    use_account: bool = False
    default_branch: str | None = Field(None, min_length=1, max_length=255)


class GitRepository(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    provider: str
    repo_url: str
    repo_full_name: str | None
    default_branch: str | None
    last_sync_at: datetime | None
    sync_status: str | None
    base_commit: str | None
    auth_source: str
    connected_by: uuid.UUID | None
    last_error: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None


class GitState(BaseModel):
    # None: the project is not connected to a repository.
    repository: GitRepository | None


class Webhook(BaseModel):
    url: str
    secret: str  # shown once: give it to the provider's webhook settings
    content_type: str = "application/json"


class GitConnected(BaseModel):
    repository: GitRepository
    webhook: Webhook
    job_id: uuid.UUID


class GitPush(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=10_000)
    # A new branch to push to (None: the repository's default branch).
    branch: str | None = Field(None, min_length=1, max_length=255)


class GitJobAccepted(BaseModel):
    job_id: uuid.UUID


class GitJob(BaseModel):
    id: uuid.UUID
    job_name: str
    status: str
    attempts: int | None
    max_attempts: int | None
    output: dict[str, Any] | None
    error: str | None
    created_at: datetime | None
    completed_at: datetime | None


def runtime(ctx: Ctx) -> GitRuntime:
    found = ctx.services.git
    if found is None:
        raise ApiError(503, "git_unavailable", "git is not configured on this server")
    return found


def webhook_url(ctx: Ctx, repository_id: uuid.UUID) -> str:
    base = str(ctx.request.base_url).rstrip("/")
    return f"{base}/api/v1/git/webhooks/{repository_id}"


async def _repository(ctx: Ctx, project_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        row = await store.by_project(conn, project_id)
    if row is None:
        raise not_found("the project has no repository", "no_repository")
    return row


async def _credentials(rt: GitRuntime, ctx: Ctx, body: GitConnect, provider: str
                       ) -> tuple[str, Credentials | None]:
    if body.use_account:
        if rt.oauth is None:
            raise ApiError(422, "accounts_unavailable", "connected accounts are not available")
        found = await rt.oauth(ctx.user_uuid, provider)
        if found is None:
            raise ApiError(422, "not_connected", f"connect your {provider} account first")
        return "oauth", found
    if body.token is not None:
        username = body.username or urls.TOKEN_USERNAMES[provider]
        return "token", Credentials(username, body.token)
    return "none", None


async def connect(ctx: Ctx) -> dict[str, Any]:
    body: GitConnect = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    rt = runtime(ctx)
    try:
        parsed = urls.parse(body.repo_url, rt.config)
    except urls.BadUrl as exc:
        raise ApiError(422, "invalid_repository_url", str(exc)) from None
    provider = body.provider or parsed.provider
    if provider is None:
        raise ApiError(422, "provider_required", "say which provider hosts this repository")
    if body.token is not None and body.use_account:
        raise ApiError(422, "validation_error", "give a token or use_account, not both")
    if body.token is not None and rt.secrets is None:
        raise ApiError(503, "secrets_unavailable", "tokens cannot be stored on this server")
    auth_source, credentials = await _credentials(rt, ctx, body, provider)
    try:
        remote_default, heads = await ls_remote(rt.git, parsed.url, credentials)
    except GitError as exc:
        code = "auth_failed" if exc.auth_failed else "repository_unreachable"
        raise ApiError(422, code, exc.message) from None
    branch = body.default_branch or remote_default or "main"
    if body.default_branch is not None and heads and branch not in heads:
        raise ApiError(422, "no_such_branch", f"the repository has no branch {branch!r}")
    secret = secrets.token_urlsafe(32)
    async with ctx.db.service() as conn:
        row = await store.insert_repository(
            conn, project_id, provider=provider, repo_url=parsed.url,
            full_name=parsed.full_name, default_branch=branch, auth_source=auth_source,
            username=credentials.username if auth_source == "token" and credentials else None,
            connected_by=ctx.user_uuid,
        )
        if row is None:
            raise conflict("the project already has a repository", "already_connected")
        repository_id = row["id"]
        token = None
        if auth_source == "token" and credentials is not None and rt.secrets is not None:
            token = rt.secrets.encrypt(credentials.password, credentials_context(repository_id))
        sealed = rt.secrets.encrypt(secret, webhook_context(repository_id)) \
            if rt.secrets is not None else None
        await store.set_secrets(conn, repository_id, token, sealed)
        job_id = await jobs.enqueue(
            conn, git_jobs.import_repository,
            git_jobs.RepositoryJob(repository_id=repository_id, user_id=ctx.user_uuid),
            dedupe_key=f"git.import:{repository_id}",
        )
    return {"repository": row, "webhook": {"url": webhook_url(ctx, repository_id),
                                           "secret": secret}, "job_id": job_id}


async def get_repository(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "viewer")
    async with ctx.db.acquire() as conn:
        return {"repository": await store.by_project(conn, project_id)}


async def disconnect(ctx: Ctx) -> None:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    row = await _repository(ctx, project_id)
    async with ctx.db.service() as conn:
        await store.delete(conn, row["id"])
    if ctx.services.git is not None:
        await ctx.services.git.repo(row["id"]).remove()


async def pull(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    row = await _repository(ctx, project_id)
    async with ctx.db.service() as conn:
        job_id = await jobs.enqueue(
            conn, git_jobs.pull,
            git_jobs.RepositoryJob(repository_id=row["id"], user_id=ctx.user_uuid),
            dedupe_key=f"git.pull:{row['id']}",
        )
    return {"job_id": job_id}


async def push(ctx: Ctx) -> dict[str, Any]:
    body: GitPush = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    row = await _repository(ctx, project_id)
    async with ctx.db.service() as conn:
        job_id = await jobs.enqueue(
            conn, git_jobs.push,
            git_jobs.PushJob(repository_id=row["id"], user_id=ctx.user_uuid,
                             message=body.message, branch=body.branch),
        )
    return {"job_id": job_id}


async def rotate_webhook_secret(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    rt = runtime(ctx)
    row = await _repository(ctx, project_id)
    if rt.secrets is None:
        raise ApiError(503, "secrets_unavailable", "secrets cannot be stored on this server")
    secret = secrets.token_urlsafe(32)
    async with ctx.db.service() as conn:
        credentials, _ = await store.secrets(conn, row["id"])
        await store.set_secrets(conn, row["id"], credentials,
                                rt.secrets.encrypt(secret, webhook_context(row["id"])))
    return {"url": webhook_url(ctx, row["id"]), "secret": secret}


async def get_job(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "viewer")
    row = await _repository(ctx, project_id)
    async with ctx.db.acquire() as conn:
        found = await conn.fetchrow(SELECT_GIT_JOB, ctx.uuid("job_id"), str(row["id"]))
    if found is None:
        raise not_found("no such job")
    return dict(found)


ENDPOINTS = [
    Endpoint("POST", "/projects/{project_id}/git", connect,
             "Connect a repository and import its default branch (a job)", "git",
             body=GitConnect, response=GitConnected, status=201, errors=(403, 409)),
    Endpoint("GET", "/projects/{project_id}/git", get_repository,
             "The project's repository and its sync state (null: none connected)", "git",
             response=GitState),
    Endpoint("DELETE", "/projects/{project_id}/git", disconnect,
             "Disconnect the repository (the files stay)", "git", status=204, errors=(403,)),
    Endpoint("POST", "/projects/{project_id}/git/pull", pull,
             "Fetch and merge the repository into the live documents (a job)", "git",
             response=GitJobAccepted, status=202, errors=(403,)),
    Endpoint("POST", "/projects/{project_id}/git/push", push,
             "Commit the project's live state as you and push it (a job)", "git",
             body=GitPush, response=GitJobAccepted, status=202, errors=(403,)),
    Endpoint("POST", "/projects/{project_id}/git/webhook-secret", rotate_webhook_secret,
             "A new push-webhook secret (shown once)", "git", response=Webhook,
             errors=(403,)),
    Endpoint("GET", "/projects/{project_id}/git/jobs/{job_id}", get_job,
             "A git job's status and result", "git", response=GitJob),
]
