"""Role checks that give better errors than RLS alone: 404 for outsiders, 403 for weak roles.

They run as the service (``server.access``); the reads and writes that follow still run as
the user under RLS, so a mistake here cannot leak rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from billing import limits as billing_limits
from server.access import (
    FILE_READ_ACCESS_AS_USER,
    PROJECT_ACCESS_AS_USER,
    ROLE_RANK,
    Access,
    conversation_access,
    file_access,
    file_read_from_row,
    open_project_access,
    project_access,
    project_from_row,
    workspace_role,
)
from server.api.routing import Ctx
from server.errors import ApiError, forbidden, not_found
from server.observe import request_facts


def _note(ctx: Ctx, workspace_id: uuid.UUID, project_id: uuid.UUID | None = None) -> None:
    """What api_logs and error_logs record of this request: the workspace (and project)."""
    facts = request_facts(ctx.request.scope)
    facts.workspace_id = workspace_id
    facts.project_id = project_id


def _check(ctx: Ctx, access: Access | None, min_role: str, what: str) -> Access:
    if access is None or access.role is None:
        raise not_found(f"no such {what}")
    _note(ctx, access.workspace_id, access.project_id)
    if not access.at_least(min_role):
        raise forbidden(f"this needs the {min_role} role or higher")
    return access


async def require_workspace(ctx: Ctx, workspace_id: uuid.UUID, min_role: str) -> str:
    role = await workspace_role(ctx.db, ctx.user_id, workspace_id)
    if role is None:
        raise not_found("no such workspace")
    _note(ctx, workspace_id)
    if ROLE_RANK[role] < ROLE_RANK[min_role]:
        raise forbidden(f"this needs the {min_role} role or higher")
    return role


async def require_project(ctx: Ctx, project_id: uuid.UUID, min_role: str) -> Access:
    access = _check(ctx, await project_access(ctx.db, ctx.user_id, project_id), min_role,
                    "project")
    await _writable(ctx, access, min_role)
    return access


async def require_project_open(ctx: Ctx, project_id: uuid.UUID) -> Access:
    """``require_project`` (viewer) that also records last_accessed_at, in one statement."""
    access = await open_project_access(ctx.db, ctx.user_id, project_id)
    return _check(ctx, access, "viewer", "project")


async def require_file(ctx: Ctx, file_id: uuid.UUID, min_role: str) -> Access:
    access = _check(ctx, await file_access(ctx.db, ctx.user_id, file_id), min_role, "file")
    await _writable(ctx, access, min_role)
    return access


async def _writable(ctx: Ctx, access: Access, min_role: str) -> None:
    """A write (any role above viewer, except deletions, which free room) to a project beyond
    its payer's plan is refused: after a downgrade such projects are read-only, not lost."""
    if (min_role == "viewer" or access.project_id is None
            or ctx.request.method in ("GET", "HEAD", "DELETE")):
        return
    async with ctx.db.acquire() as conn:
        writable = await billing_limits.project_writable(conn, access.project_id)
    if not writable:
        raise ApiError(
            402, "project_read_only",
            "this project is over its owner's plan limit and read-only: upgrade the plan or "
            "delete projects to edit it again", extra={"resource": "projects"})


@asynccontextmanager
async def file_as_user(
    ctx: Ctx, file_id: uuid.UUID, min_role: str
) -> AsyncIterator[tuple[asyncpg.Connection, Access]]:
    """``require_file`` and then ``as_user``, in one transaction whose first statement is
    the check (as the service) and the switch to the user. The Access also says whether
    the file's document has unmerged log rows."""
    query = FILE_READ_ACCESS_AS_USER
    async with ctx.db.as_user_after(ctx.user_id, query, file_id, ctx.user_uuid) as (conn, row):
        yield conn, _check(ctx, file_read_from_row(row), min_role, "file")


@asynccontextmanager
async def project_as_user(
    ctx: Ctx, project_id: uuid.UUID, min_role: str
) -> AsyncIterator[tuple[asyncpg.Connection, Access]]:
    """``require_project`` and then ``as_user`` the same way."""
    query = PROJECT_ACCESS_AS_USER
    async with ctx.db.as_user_after(
        ctx.user_id, query, project_id, ctx.user_uuid
    ) as (conn, row):
        yield conn, _check(ctx, project_from_row(row), min_role, "project")


async def require_conversation(ctx: Ctx, conversation_id: uuid.UUID, min_role: str) -> Access:
    access = await conversation_access(ctx.db, ctx.user_id, conversation_id)
    return _check(ctx, access, min_role, "conversation")
