"""Workspaces: create (creator becomes owner), list mine, get, update, deactivate, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from persistence import workspaces as store
from server.api.guards import require_workspace
from server.api.members import announce
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.api.slugs import MAX_SLUG, SLUG_PATTERN, insert_with_slug
from server.errors import not_found


class Workspace(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    owner_id: uuid.UUID
    settings: dict[str, Any] | None
    is_active: bool | None
    created_at: datetime | None
    updated_at: datetime | None
    role: str | None


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(None, max_length=MAX_SLUG, pattern=SLUG_PATTERN)
    description: str | None = Field(None, max_length=5000)
    settings: dict[str, Any] = Field(default_factory=dict)


class WorkspaceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    slug: str | None = Field(None, max_length=MAX_SLUG, pattern=SLUG_PATTERN)
    description: str | None = Field(None, max_length=5000)
    settings: dict[str, Any] | None = None


async def _get(ctx: Ctx, workspace_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_workspace(conn, workspace_id, ctx.user_uuid)
    if row is None:
        raise not_found("no such workspace")
    return row


async def create_workspace(ctx: Ctx) -> dict[str, Any]:
    body: WorkspaceCreate = ctx.body
    me = ctx.user_uuid
    async with ctx.db.as_user(ctx.user_id) as conn:

        async def insert(slug: str) -> uuid.UUID:
            workspace_id = await store.insert_workspace(
                conn, body.name, slug, body.description, me, body.settings
            )
            await store.insert_member(conn, workspace_id, me, "owner", me)
            return workspace_id

        workspace_id = await insert_with_slug(conn, body.slug, body.name, "workspace", insert)
        row = await store.get_workspace(conn, workspace_id, me)
    assert row is not None
    return row


async def list_workspaces(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_workspaces(conn, ctx.user_uuid, after, query.limit + 1)
    return page(rows, query.limit, "created_at")


async def get_workspace(ctx: Ctx) -> dict[str, Any]:
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "viewer")
    return await _get(ctx, workspace_id)


async def _update(ctx: Ctx, workspace_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
    async with ctx.db.as_user(ctx.user_id) as conn:
        if "slug" in changes:
            slug = changes.pop("slug")
            await insert_with_slug(
                conn, slug, "", "workspace",
                lambda s: store.update_workspace(conn, workspace_id, {"slug": s}),
            )
        if not await store.update_workspace(conn, workspace_id, changes):
            raise not_found("no such workspace")
    return await _get(ctx, workspace_id)


async def update_workspace(ctx: Ctx) -> dict[str, Any]:
    body: WorkspaceUpdate = ctx.body
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "admin")
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return await _update(ctx, workspace_id, changes)


async def deactivate_workspace(ctx: Ctx) -> dict[str, Any]:
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "owner")
    return await _update(ctx, workspace_id, {"is_active": False})


async def delete_workspace(ctx: Ctx) -> None:
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "owner")
    async with ctx.db.as_user(ctx.user_id) as conn:
        if not await store.delete_workspace(conn, workspace_id):
            raise not_found("no such workspace")
    # Every open socket of the workspace closes (its memberships went with it).
    await announce(ctx, workspace_id, "workspace.deleted", None, None)


ENDPOINTS = [
    Endpoint("POST", "/workspaces", create_workspace, "Create a workspace (you become owner)",
             "workspaces", body=WorkspaceCreate, response=Workspace, status=201, errors=(409,)),
    Endpoint("GET", "/workspaces", list_workspaces, "Workspaces I belong to, newest first",
             "workspaces", query=PageQuery, response=Workspace, paged=True),
    Endpoint("GET", "/workspaces/{workspace_id}", get_workspace, "One workspace", "workspaces",
             response=Workspace),
    Endpoint("PATCH", "/workspaces/{workspace_id}", update_workspace,
             "Update a workspace (admin or owner)", "workspaces", body=WorkspaceUpdate,
             response=Workspace, errors=(403, 409)),
    Endpoint("POST", "/workspaces/{workspace_id}/deactivate", deactivate_workspace,
             "Deactivate a workspace (owner)", "workspaces", response=Workspace, errors=(403,)),
    Endpoint("DELETE", "/workspaces/{workspace_id}", delete_workspace,
             "Delete a workspace and everything in it (owner)", "workspaces", status=204,
             errors=(403,)),
]
