"""Role checks that give better errors than RLS alone: 404 for outsiders, 403 for weak roles.

They run as the service (``server.access``); the reads and writes that follow still run as
the user under RLS, so a mistake here cannot leak rows.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from billing import limits as billing_limits
from persistence import hot_reads
from server.access import (
    ROLE_RANK,
    Access,
    conversation_access,
    file_access,
    project_access,
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


def _checked_row(ctx: Ctx, row: asyncpg.Record, min_role: str, what: str) -> Access:
    """The Access a hot read's check columns mean, checked like ``_check``."""
    workspace_id = row["access_workspace_id"]
    access = None if workspace_id is None else Access(
        workspace_id, row["access_project_id"], row["access_role"])
    return _check(ctx, access, min_role, what)


async def read_file(
    ctx: Ctx, file_id: uuid.UUID, min_role: str
) -> tuple[Access, dict[str, Any] | None]:
    """``require_file`` and the file with its content read as the user, in one statement
    (``persistence.hot_reads``). The Access also says whether the file's document has
    unmerged log rows; the file is None when RLS hid it."""
    async with ctx.db.acquire() as conn:
        row = await hot_reads.read_file(conn, file_id, ctx.user_id)
    access = _checked_row(ctx, row, min_role, "file")
    access = Access(access.workspace_id, access.project_id, access.role, file_id=file_id,
                    has_unmerged_log=bool(row["logged"]))
    return access, hot_reads.read_columns(row, len(hot_reads.ACCESS_COLUMNS) + 1)


async def list_project_files(
    ctx: Ctx, project_id: uuid.UUID, include_deleted: bool,
    after: tuple[Any, uuid.UUID] | None, limit: int,
) -> list[dict[str, Any]]:
    """``require_project`` (viewer) and a page of its files read as the user, in one
    statement."""
    async with ctx.db.acquire() as conn:
        row, files = await hot_reads.list_files(
            conn, project_id, ctx.user_id, include_deleted, after, limit)
    _checked_row(ctx, row, "viewer", "project")
    return files


async def open_project(ctx: Ctx, project_id: uuid.UUID) -> dict[str, Any] | None:
    """``require_project`` (viewer), last_accessed_at recorded and the project read as the
    user, in one statement. None when RLS hid it."""
    async with ctx.db.acquire() as conn:
        row = await hot_reads.open_project(conn, project_id, ctx.user_id)
    _checked_row(ctx, row, "viewer", "project")
    return hot_reads.read_columns(row, len(hot_reads.ACCESS_COLUMNS))


async def require_conversation(ctx: Ctx, conversation_id: uuid.UUID, min_role: str) -> Access:
    access = await conversation_access(ctx.db, ctx.user_id, conversation_id)
    return _check(ctx, access, min_role, "conversation")
