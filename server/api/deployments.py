"""Deployments and previews: deploy (a job), list, read with logs, cancel, promote, roll back;
tickets into private previews; making a project's previews public.

Roles: viewers read deployments and open previews; members deploy to development and
staging and cancel; admins and owners deploy to production, promote, roll back and decide
whether previews are public.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

import jobs
from persistence import deployments as store
from preview import tickets
from preview.builds import BuildInput, ReleaseError, build_deployment
from preview.runtime import PreviewKey
from server.api.guards import require_project
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, forbidden, not_found
from server.preview_wiring import Previews

Environment = Literal["development", "staging", "production"]
TargetName = Literal["preview", "vercel"]
SET_PUBLIC = """
update public.projects
set settings = coalesce(settings, '{}'::jsonb) || jsonb_build_object('preview_public', $2::boolean)
where id = $1 returning id
"""


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: Environment = "development"
    target: TargetName = "preview"


class Deployment(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    environment: str
    status: str
    target: str
    commit_sha: str | None
    branch: str | None
    deploy_url: str | None
    build_time_ms: int | None
    error: str | None
    deployed_by: uuid.UUID | None
    deployed_at: datetime | None
    created_at: datetime | None
    finished_at: datetime | None
    job_id: uuid.UUID | None
    external_id: str | None
    logs: str | None = Field(None, description="only when one deployment is read")
    created: bool | None = Field(None, description="false: an unfinished one was returned")


class ListQuery(PageQuery):
    environment: Environment | None = None


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: Environment = "production"


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: Environment = "development"
    path: str = Field("/", max_length=2048, pattern=r"^/")


class PreviewSession(BaseModel):
    url: str = Field(description="open it (e.g. in the IDE's frame): it sets the preview's "
                     "session cookie and redirects to the path")
    preview_url: str
    expires_in: int


class AccessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: bool


def _previews(ctx: Ctx) -> Previews:
    previews = ctx.services.previews
    if previews is None:
        raise ApiError(503, "previews_unavailable",
                       "previews need the local sandbox (bubblewrap) on this server")
    return previews


def _check_environment(access_admin: bool, environment: str) -> None:
    if environment == "production" and not access_admin:
        raise forbidden("production deployments are made by admins and owners")


async def create_deployment(ctx: Ctx) -> dict[str, Any]:
    body: DeploymentCreate = ctx.body
    project_id = ctx.uuid("project_id")
    access = await require_project(ctx, project_id, "member")
    _check_environment(access.at_least("admin"), body.environment)
    if body.target == "preview":
        _previews(ctx)
    async with ctx.db.service() as conn, conn.transaction():
        row, created = await store.create(conn, project_id=project_id,
                                          environment=body.environment, target=body.target,
                                          user_id=ctx.user_uuid)
        if created:
            job_id = await jobs.enqueue(conn, build_deployment, BuildInput(deployment_id=row["id"]),
                                        dedupe_key=f"deployments.build:{row['id']}")
            await store.set_job(conn, row["id"], job_id)
            row["job_id"] = job_id
    projects = ctx.services.projects
    if created and projects is not None:
        await projects.publish(project_id, {"type": "deployment.status",
                                            "deployment_id": str(row["id"]), "status": "pending",
                                            "environment": body.environment})
    return {**row, "created": created}


async def list_deployments(ctx: Ctx) -> dict[str, Any]:
    query: ListQuery = ctx.query
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "viewer")
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_for(conn, project_id, query.environment, after, query.limit + 1)
    return page(rows, query.limit, "created_at")


async def get_deployment(ctx: Ctx) -> dict[str, Any]:
    project_id, deployment_id = ctx.uuid("project_id"), ctx.uuid("deployment_id")
    await require_project(ctx, project_id, "viewer")
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get(conn, project_id, deployment_id)
    if row is None:
        raise not_found("no such deployment")
    return row


async def cancel_deployment(ctx: Ctx) -> dict[str, Any]:
    project_id, deployment_id = ctx.uuid("project_id"), ctx.uuid("deployment_id")
    await require_project(ctx, project_id, "member")
    async with ctx.db.service() as conn:
        row = await store.cancel(conn, project_id, deployment_id, "canceled by a user\n")
        if row is None:
            existing = await store.get(conn, project_id, deployment_id)
            if existing is None:
                raise not_found("no such deployment")
            raise ApiError(409, "not_cancelable", f"the deployment is {existing['status']}")
    projects = ctx.services.projects
    if projects is not None:
        await projects.publish(project_id, {"type": "deployment.status",
                                            "deployment_id": str(deployment_id),
                                            "status": "canceled",
                                            "environment": row["environment"]})
    return row


async def promote_deployment(ctx: Ctx) -> dict[str, Any]:
    project_id, deployment_id = ctx.uuid("project_id"), ctx.uuid("deployment_id")
    await require_project(ctx, project_id, "admin")
    return await _release(ctx, project_id, deployment_id, "promote")


async def rollback(ctx: Ctx) -> dict[str, Any]:
    body: RollbackBody = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "admin")
    async with ctx.db.service() as conn:
        current = await store.current_release(conn, project_id, body.environment)
    if current is None or current["previous_deployment_id"] is None:
        raise ApiError(409, "nothing_to_roll_back",
                       f"{body.environment} has no previous deployment")
    return await _release(ctx, project_id, current["previous_deployment_id"], "rollback")


async def _release(ctx: Ctx, project_id: uuid.UUID, deployment_id: uuid.UUID,
                   action: str) -> dict[str, Any]:
    async with ctx.db.service() as conn:
        row = await store.get(conn, project_id, deployment_id)
    if row is None:
        raise not_found("no such deployment")
    if row["status"] != "success":
        raise ApiError(409, "not_deployable", f"the deployment is {row['status']}")
    deployer = _previews(ctx).deployer
    try:
        await deployer.serve_again(row)
    except ReleaseError as exc:
        raise ApiError(409, "release_failed", str(exc)) from None
    async with ctx.db.service() as conn:
        release = await store.add_release(conn, project_id=project_id,
                                          environment=row["environment"],
                                          deployment_id=deployment_id, action=action,
                                          user_id=ctx.user_uuid)
    projects = ctx.services.projects
    if projects is not None:
        await projects.publish(project_id, {"type": "deployment.released", "action": action,
                                            "deployment_id": str(deployment_id),
                                            "environment": row["environment"],
                                            "url": row["deploy_url"]})
    return {**release, "deploy_url": row["deploy_url"]}


async def create_preview_session(ctx: Ctx) -> dict[str, Any]:
    body: SessionBody = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "viewer")
    previews = _previews(ctx)
    key = PreviewKey(project_id, body.environment)
    grant = tickets.PreviewGrant(ctx.user_uuid, project_id, body.environment)
    ticket = tickets.issue(previews.proxy.key, grant, audience=tickets.TICKET_AUDIENCE,
                           ttl_s=tickets.TICKET_TTL_S)
    base = previews.runtime.url(key)
    url = (f"{base.rstrip('/')}/__icreate/session?ticket={ticket}"
           f"&next={quote(body.path, safe='/')}")
    return {"url": url, "preview_url": base, "expires_in": tickets.TICKET_TTL_S}


async def set_preview_access(ctx: Ctx) -> dict[str, Any]:
    body: AccessBody = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "admin")
    async with ctx.db.service() as conn:
        if await conn.fetchval(SET_PUBLIC, project_id, body.public) is None:
            raise not_found("no such project")
    return {"public": body.public}


PATH = "/projects/{project_id}/deployments"
ENDPOINTS = [
    Endpoint("POST", PATH, create_deployment,
             "Deploy the project (a job: pending, building, deploying, success/failed); "
             "production needs admin", "deployments", body=DeploymentCreate, body_required=False,
             response=Deployment, status=202, errors=(403, 503)),
    Endpoint("GET", PATH, list_deployments, "A project's deployments, newest first",
             "deployments", query=ListQuery, response=Deployment, paged=True),
    # Before /{deployment_id}: every method of a matching path reaches its dispatcher.
    Endpoint("POST", PATH + "/rollback", rollback,
             "Serve the environment's previous deployment again (admin)", "deployments",
             body=RollbackBody, body_required=False, errors=(409,)),
    Endpoint("GET", PATH + "/{deployment_id}", get_deployment,
             "One deployment with its logs", "deployments", response=Deployment, errors=(404,)),
    Endpoint("POST", PATH + "/{deployment_id}/cancel", cancel_deployment,
             "Cancel an unfinished deployment (member)", "deployments", body_required=False,
             response=Deployment, errors=(404, 409)),
    Endpoint("POST", PATH + "/{deployment_id}/promote", promote_deployment,
             "Serve this successful deployment in its environment again (admin)",
             "deployments", body_required=False, errors=(404, 409)),
    Endpoint("POST", "/projects/{project_id}/preview-sessions", create_preview_session,
             "A one-minute link into the project's preview that signs the viewer in there",
             "deployments", body=SessionBody, body_required=False, response=PreviewSession,
             status=201, errors=(503,)),
    Endpoint("PUT", "/projects/{project_id}/preview-access", set_preview_access,
             "Make the project's previews public, or members-only again (admin)",
             "deployments", body=AccessBody, errors=(403, 404)),
]
