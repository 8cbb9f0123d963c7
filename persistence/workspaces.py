"""Workspaces and their members. Run these on a ``Database.as_user`` connection."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

WORKSPACE_COLUMNS = """
w.id, w.name, w.slug, w.description, w.owner_id, w.settings, w.is_active,
w.created_at, w.updated_at
"""
INSERT_WORKSPACE = """
insert into public.workspaces (id, name, slug, description, owner_id, settings)
values ($1, $2, $3, $4, $5, $6)
"""
INSERT_MEMBER = """
insert into public.workspace_members (workspace_id, user_id, role, invited_by)
values ($1, $2, $3, $4)
"""
SELECT_WORKSPACE = f"""
select {WORKSPACE_COLUMNS}, m.role
from public.workspaces w
left join public.workspace_members m on m.workspace_id = w.id and m.user_id = $2
where w.id = $1
"""
LIST_MY_WORKSPACES = f"""
select {WORKSPACE_COLUMNS}, m.role
from public.workspaces w
join public.workspace_members m on m.workspace_id = w.id and m.user_id = $1
where ($2::timestamptz is null or (w.created_at, w.id) < ($2, $3))
order by w.created_at desc, w.id desc
limit $4
"""
UPDATABLE_WORKSPACE_FIELDS = ("name", "slug", "description", "settings", "is_active")
DELETE_WORKSPACE = "delete from public.workspaces where id = $1 returning id"

MEMBER_COLUMNS = """
m.id, m.workspace_id, m.user_id, m.role, m.invited_by, m.joined_at,
u.email, u.full_name, u.avatar_url
"""
LIST_MEMBERS = f"""
select {MEMBER_COLUMNS}
from public.workspace_members m
left join public.users u on u.id = m.user_id
where m.workspace_id = $1
  and ($2::timestamptz is null or (m.joined_at, m.id) > ($2, $3))
order by m.joined_at, m.id
limit $4
"""
SELECT_MEMBER = f"""
select {MEMBER_COLUMNS}
from public.workspace_members m
left join public.users u on u.id = m.user_id
where m.workspace_id = $1 and m.user_id = $2
"""
# Locks the workspace's owner rows so two concurrent demotions cannot remove the last owner.
LOCK_OWNERS = """
select user_id from public.workspace_members
where workspace_id = $1 and role = 'owner'
for update
"""
UPDATE_MEMBER_ROLE = """
update public.workspace_members set role = $3 where workspace_id = $1 and user_id = $2
returning id
"""
DELETE_MEMBER = """
delete from public.workspace_members where workspace_id = $1 and user_id = $2 returning id
"""


async def insert_workspace(
    conn: asyncpg.Connection,
    name: str,
    slug: str,
    description: str | None,
    owner_id: uuid.UUID,
    settings: dict[str, Any],
) -> uuid.UUID:
    # The id is made here, not returned: RETURNING would need the row to be visible, and
    # under RLS it is visible only once the owner's membership exists.
    workspace_id = uuid.uuid4()
    await conn.execute(INSERT_WORKSPACE, workspace_id, name, slug, description, owner_id, settings)
    return workspace_id


async def insert_member(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str,
    invited_by: uuid.UUID | None,
) -> None:
    await conn.execute(INSERT_MEMBER, workspace_id, user_id, role, invited_by)


async def get_workspace(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_WORKSPACE, workspace_id, user_id)
    return dict(row) if row else None


async def list_workspaces(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_MY_WORKSPACES, user_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def update_workspace(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, changes: dict[str, Any]
) -> bool:
    fields = [name for name in UPDATABLE_WORKSPACE_FIELDS if name in changes]
    if not fields:
        found = await conn.fetchval("select id from public.workspaces where id = $1", workspace_id)
        return found is not None
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(fields))
    query = f"update public.workspaces set {assignments} where id = $1 returning id"
    found = await conn.fetchval(query, workspace_id, *(changes[name] for name in fields))
    return found is not None


async def delete_workspace(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> bool:
    return await conn.fetchval(DELETE_WORKSPACE, workspace_id) is not None


async def list_members(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_MEMBERS, workspace_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def get_member(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_MEMBER, workspace_id, user_id)
    return dict(row) if row else None


async def lock_owners(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["user_id"] for r in await conn.fetch(LOCK_OWNERS, workspace_id)]


async def set_member_role(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> bool:
    return await conn.fetchval(UPDATE_MEMBER_ROLE, workspace_id, user_id, role) is not None


async def delete_member(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    return await conn.fetchval(DELETE_MEMBER, workspace_id, user_id) is not None
