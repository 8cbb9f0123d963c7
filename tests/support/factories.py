"""Test data factories: rows of the seed schema, inserted as the service (RLS bypassed).

Each takes an asyncpg connection of the service/superuser and returns the new row's id.
Emails and slugs are unique random values unless given.
"""

from __future__ import annotations

import json
import uuid

import asyncpg

INSERT_AUTH_USER = """
insert into auth.users (email, raw_user_meta_data, email_confirmed_at)
values ($1, $2::text::jsonb, now())
returning id
"""
INSERT_WORKSPACE = """
insert into public.workspaces (name, slug, owner_id) values ($1, $2, $3) returning id
"""
INSERT_MEMBER = """
insert into public.workspace_members (workspace_id, user_id, role) values ($1, $2, $3)
returning id
"""
INSERT_PROJECT = """
insert into public.projects (workspace_id, name, slug) values ($1, $2, $3) returning id
"""
SELECT_FILE_ID = "select id from public.files where project_id = $1 and path = $2"
INSERT_FILE = """
insert into public.files
  (project_id, path, name, type, content, size_bytes, parent_id, created_by, updated_by)
values ($1, $2, $3, $4, $5, $6, $7, $8, $8)
returning id
"""
INSERT_CONVERSATION = """
insert into public.conversations (project_id, user_id, title) values ($1, $2, $3) returning id
"""


def _token() -> str:
    return uuid.uuid4().hex[:12]


async def create_user(
    conn: asyncpg.Connection, email: str | None = None, *, full_name: str | None = None
) -> uuid.UUID:
    """An auth.users row; the sync trigger creates the public.users profile."""
    meta = json.dumps({} if full_name is None else {"full_name": full_name})
    user_id: uuid.UUID = await conn.fetchval(
        INSERT_AUTH_USER, email or f"user-{_token()}@example.test", meta
    )
    return user_id


async def create_workspace(
    conn: asyncpg.Connection, owner_id: uuid.UUID, name: str | None = None
) -> uuid.UUID:
    """A workspace and its owner's 'owner' membership."""
    token = _token()
    workspace_id: uuid.UUID = await conn.fetchval(
        INSERT_WORKSPACE, name or f"Workspace {token}", f"ws-{token}", owner_id
    )
    await conn.execute(INSERT_MEMBER, workspace_id, owner_id, "owner")
    return workspace_id


async def add_member(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> uuid.UUID:
    """A workspace_members row (role: owner, admin, member or viewer)."""
    member_id: uuid.UUID = await conn.fetchval(INSERT_MEMBER, workspace_id, user_id, role)
    return member_id


async def create_project(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, name: str | None = None
) -> uuid.UUID:
    token = _token()
    project_id: uuid.UUID = await conn.fetchval(
        INSERT_PROJECT, workspace_id, name or f"Project {token}", f"p-{token}"
    )
    return project_id


async def create_file(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    path: str,
    content: str = "",
    *,
    created_by: uuid.UUID | None = None,
    type: str = "file",
) -> uuid.UUID:
    """A file (or folder) at ``path``; missing parent folders are created first.

    The path is stored as given (a leading ``/`` is kept for the parents too).
    """
    prefix = "/" if path.startswith("/") else ""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError(f"empty file path: {path!r}")
    parent_id: uuid.UUID | None = None
    for depth in range(1, len(parts)):
        folder_path = prefix + "/".join(parts[:depth])
        existing: uuid.UUID | None = await conn.fetchval(SELECT_FILE_ID, project_id, folder_path)
        if existing is None:
            existing = await conn.fetchval(
                INSERT_FILE, project_id, folder_path, parts[depth - 1], "folder",
                None, None, parent_id, created_by,
            )
        parent_id = existing
    is_folder = type == "folder"
    file_id: uuid.UUID = await conn.fetchval(
        INSERT_FILE,
        project_id,
        prefix + "/".join(parts),
        parts[-1],
        type,
        None if is_folder else content,
        None if is_folder else len(content.encode()),
        parent_id,
        created_by,
    )
    return file_id


async def create_conversation(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str | None = None,
) -> uuid.UUID:
    conversation_id: uuid.UUID = await conn.fetchval(
        INSERT_CONVERSATION, project_id, user_id, title
    )
    return conversation_id


INSERT_CUSTOMER = """
insert into public.customers (user_id, stripe_customer_id) values ($1, $2)
on conflict (user_id) do update set updated_at = now()
returning id
"""
INSERT_SUBSCRIPTION = """
insert into public.subscriptions
  (customer_id, plan_id, stripe_subscription_id, status, billing_interval,
   current_period_start, current_period_end)
select $1, id, $2, 'active', 'monthly', now(), now() + interval '30 days'
from public.subscription_plans where slug = $3
returning id
"""


async def subscribe(conn: asyncpg.Connection, user_id: uuid.UUID, plan: str = "team") -> uuid.UUID:
    """An active subscription of ``user_id`` to ``plan`` (as the Stripe webhooks would leave
    it): the workspaces they own get that plan's limits."""
    customer_id = await conn.fetchval(INSERT_CUSTOMER, user_id, f"cus_{_token()}")
    subscription_id: uuid.UUID = await conn.fetchval(
        INSERT_SUBSCRIPTION, customer_id, f"sub_{_token()}", plan)
    return subscription_id
