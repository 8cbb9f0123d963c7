"""AI conversations of a project and their messages. Run on a ``Database.as_user`` connection."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

CONVERSATION_COLUMNS = """
id, project_id, user_id, title, context, is_archived, created_at, updated_at
"""
INSERT_CONVERSATION = """
insert into public.conversations (id, project_id, user_id, title, context)
values ($1, $2, $3, $4, $5)
"""
SELECT_CONVERSATION = f"select {CONVERSATION_COLUMNS} from public.conversations where id = $1"
LIST_MY_CONVERSATIONS = f"""
select {CONVERSATION_COLUMNS}
from public.conversations
where project_id = $1 and user_id = $2 and not coalesce(is_archived, false)
  and ($3::timestamptz is null or (created_at, id) < ($3, $4))
order by created_at desc, id desc
limit $5
"""
UPDATE_CONVERSATION = """
update public.conversations
set title = coalesce($2, title), is_archived = coalesce($3, is_archived)
where id = $1
returning id
"""
MESSAGE_COLUMNS = """
id, conversation_id, role, content, metadata, tokens_used, model, created_at
"""
LIST_MESSAGES = f"""
select {MESSAGE_COLUMNS}
from public.messages
where conversation_id = $1
  and ($2::timestamptz is null or (created_at, id) > ($2, $3))
order by created_at, id
limit $4
"""


async def insert_conversation(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    title: str | None,
    context: dict[str, Any],
) -> uuid.UUID:
    conversation_id = uuid.uuid4()
    await conn.execute(INSERT_CONVERSATION, conversation_id, project_id, user_id, title, context)
    return conversation_id


async def get_conversation(
    conn: asyncpg.Connection, conversation_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_CONVERSATION, conversation_id)
    return dict(row) if row else None


async def list_my_conversations(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_MY_CONVERSATIONS, project_id, user_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def update_conversation(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    *,
    title: str | None = None,
    archived: bool | None = None,
) -> bool:
    found = await conn.fetchval(UPDATE_CONVERSATION, conversation_id, title, archived)
    return found is not None


async def list_messages(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_MESSAGES, conversation_id, key, last_id, limit)
    return [dict(r) for r in rows]
