"""Projects: create, list (most recently opened first), open, update, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing import limits as billing_limits
from persistence import projects as store
from server.api.guards import open_project, require_project, require_workspace
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.api.slugs import MAX_SLUG, SLUG_PATTERN, insert_with_slug
from server.errors import not_found

Visibility = Literal["public", "private", "team"]


class Project(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    slug: str
    description: str | None
    repository_url: str | None
    language: str | None
    framework: str | None
    visibility: str | None
    settings: dict[str, Any] | None
    last_accessed_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(None, max_length=MAX_SLUG, pattern=SLUG_PATTERN)
    description: str | None = Field(None, max_length=5000)
    repository_url: str | None = Field(None, max_length=2048)
    language: str | None = Field(None, max_length=64)
    framework: str | None = Field(None, max_length=64)
    visibility: Visibility = "private"
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    slug: str | None = Field(None, max_length=MAX_SLUG, pattern=SLUG_PATTERN)
    description: str | None = Field(None, max_length=5000)
    repository_url: str | None = Field(None, max_length=2048)
    language: str | None = Field(None, max_length=64)
    framework: str | None = Field(None, max_length=64)
    visibility: Visibility | None = None
    settings: dict[str, Any] | None = None


async def create_project(ctx: Ctx) -> dict[str, Any]:
    body: ProjectCreate = ctx.body
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "member")
    fields = body.model_dump()
    async with ctx.db.as_user(ctx.user_id) as conn:
        # The payer's project limit, held until this transaction (and its insert) commits.
        await billing_limits.take(conn, workspace_id, "projects")
        project_id = await insert_with_slug(
            conn, body.slug, body.name, "project",
            lambda slug: store.insert_project(conn, workspace_id, slug, fields),
        )
        row = await store.get_project(conn, project_id)
    assert row is not None
    return row


async def list_projects(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "viewer")
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_projects(conn, workspace_id, after, query.limit + 1)
    return page(rows, query.limit, "last_accessed_at")


async def get_project(ctx: Ctx) -> dict[str, Any]:
    project_id = ctx.uuid("project_id")
    row = await open_project(ctx, project_id)
    if row is None:
        raise not_found("no such project")
    return row


async def update_project(ctx: Ctx) -> dict[str, Any]:
    body: ProjectUpdate = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    async with ctx.db.as_user(ctx.user_id) as conn:
        if "slug" in changes:
            slug = changes.pop("slug")
            await insert_with_slug(
                conn, slug, "", "project",
                lambda s: store.update_project(conn, project_id, {"slug": s}),
            )
        if not await store.update_project(conn, project_id, changes):
            raise not_found("no such project")
        row = await store.get_project(conn, project_id)
    if row is None:
        raise not_found("no such project")
    return row


async def delete_project(ctx: Ctx) -> None:
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "admin")
    async with ctx.db.as_user(ctx.user_id) as conn:
        if not await store.delete_project(conn, project_id):
            raise not_found("no such project")


ENDPOINTS = [
    Endpoint("POST", "/workspaces/{workspace_id}/projects", create_project,
             "Create a project (member or higher)", "projects", body=ProjectCreate,
             response=Project, status=201, errors=(402, 403, 409)),
    Endpoint("GET", "/workspaces/{workspace_id}/projects", list_projects,
             "Projects of a workspace, most recently opened first", "projects",
             query=PageQuery, response=Project, paged=True),
    Endpoint("GET", "/projects/{project_id}", get_project,
             "Open a project (records last_accessed_at)", "projects", response=Project),
    Endpoint("PATCH", "/projects/{project_id}", update_project,
             "Update a project (member or higher)", "projects", body=ProjectUpdate,
             response=Project, errors=(403, 409)),
    Endpoint("DELETE", "/projects/{project_id}", delete_project,
             "Delete a project (admin or owner)", "projects", status=204, errors=(403,)),
]
