"""Workspace members: list, invite an existing user by email, change a role, remove, leave.

Owners and admins manage members; only owners grant, change or remove the owner role; a
workspace always keeps at least one owner; any member may leave.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing import limits as billing_limits
from persistence import accounts
from persistence import workspaces as store
from server.api.guards import require_workspace
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, conflict, forbidden, not_found
from server.membership import Membership

Role = Literal["owner", "admin", "member", "viewer"]


class Member(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    invited_by: uuid.UUID | None
    joined_at: datetime | None
    email: str | None
    full_name: str | None
    avatar_url: str | None


class Invite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254)
    role: Role = "member"


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


async def announce(ctx: Ctx, workspace_id: uuid.UUID, kind: str, user_id: uuid.UUID | None,
                   role: str | None) -> None:
    """The one membership-change path (server/membership.py): this node's sockets of the
    user are re-checked now, every other node's when ``access:{workspace_id}`` reaches it."""
    membership: Membership | None = ctx.services.membership
    if membership is None:
        raise RuntimeError("membership is not running in this process")
    await membership.announce(workspace_id, user_id, kind, role)


def last_owner() -> ApiError:
    return conflict("a workspace must keep at least one owner", "last_owner")


async def list_members(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "viewer")
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_members(conn, workspace_id, after, query.limit + 1)
    return page(rows, query.limit, "joined_at")


async def invite_member(ctx: Ctx) -> dict[str, Any]:
    body: Invite = ctx.body
    workspace_id = ctx.uuid("workspace_id")
    my_role = await require_workspace(ctx, workspace_id, "admin")
    if body.role == "owner" and my_role != "owner":
        raise forbidden("only owners can add owners")
    # Profiles of strangers are hidden by RLS: the lookup runs as the service.
    async with ctx.db.acquire() as conn:
        user_id = await accounts.user_id_by_email(conn, body.email.strip())
    if user_id is None:
        raise not_found("no user with this email", "user_not_found")
    async with ctx.db.as_user(ctx.user_id) as conn:
        if await store.get_member(conn, workspace_id, user_id) is not None:
            raise conflict("already a member", "already_member")
        # Members per workspace under the owner's plan, held until the insert commits.
        await billing_limits.take(conn, workspace_id, "members")
        await store.insert_member(conn, workspace_id, user_id, body.role, ctx.user_uuid)
        row = await store.get_member(conn, workspace_id, user_id)
    assert row is not None
    return row


async def change_role(ctx: Ctx) -> dict[str, Any]:
    body: RoleChange = ctx.body
    workspace_id = ctx.uuid("workspace_id")
    target = ctx.uuid("user_id")
    my_role = await require_workspace(ctx, workspace_id, "admin")
    async with ctx.db.as_user(ctx.user_id) as conn:
        owners = await store.lock_owners(conn, workspace_id)
        current = await store.get_member(conn, workspace_id, target)
        if current is None:
            raise not_found("no such member")
        if (current["role"] == "owner" or body.role == "owner") and my_role != "owner":
            raise forbidden("only owners can grant or change the owner role")
        if current["role"] == "owner" and body.role != "owner" and owners == [target]:
            raise last_owner()
        if not await store.set_member_role(conn, workspace_id, target, body.role):
            raise forbidden()
        row = await store.get_member(conn, workspace_id, target)
    assert row is not None
    await announce(ctx, workspace_id, "member.updated", target, body.role)
    return row


async def remove_member(ctx: Ctx) -> None:
    workspace_id = ctx.uuid("workspace_id")
    target = ctx.uuid("user_id")
    leaving = target == ctx.user_uuid
    my_role = await require_workspace(ctx, workspace_id, "viewer" if leaving else "admin")
    async with ctx.db.as_user(ctx.user_id) as conn:
        owners = await store.lock_owners(conn, workspace_id)
        current = await store.get_member(conn, workspace_id, target)
        if current is None:
            raise not_found("no such member")
        if current["role"] == "owner" and not leaving and my_role != "owner":
            raise forbidden("only owners can remove an owner")
        if current["role"] == "owner" and owners == [target]:
            raise last_owner()
        if not await store.delete_member(conn, workspace_id, target):
            raise forbidden()
    await announce(ctx, workspace_id, "member.removed", target, None)


ENDPOINTS = [
    Endpoint("GET", "/workspaces/{workspace_id}/members", list_members, "Members of a workspace",
             "members", query=PageQuery, response=Member, paged=True),
    Endpoint("POST", "/workspaces/{workspace_id}/members", invite_member,
             "Add an existing user by email with a role (admin or owner)", "members",
             body=Invite, response=Member, status=201, errors=(402, 403, 409)),
    Endpoint("PATCH", "/workspaces/{workspace_id}/members/{user_id}", change_role,
             "Change a member's role (admin or owner)", "members", body=RoleChange,
             response=Member, errors=(403, 409)),
    Endpoint("DELETE", "/workspaces/{workspace_id}/members/{user_id}", remove_member,
             "Remove a member, or leave when it is you", "members", status=204,
             errors=(403, 409)),
]
