"""Chat records: messages, ai_jobs, ai_tokens usage, and the user's plan allowance.

Every function takes a connection of the service (the chat hub has authorized the caller
already); SQL lives here as named constants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

MESSAGE_COLUMNS = "id, conversation_id, role, content, metadata, tokens_used, model, created_at"

SELECT_CONVERSATION = """
select c.id, c.project_id, p.workspace_id, c.is_archived
from public.conversations c join public.projects p on p.id = c.project_id
where c.id = $1
"""
INSERT_MESSAGE = f"""
insert into public.messages (conversation_id, role, content, metadata, tokens_used, model)
values ($1, $2, $3, $4, $5, $6)
returning {MESSAGE_COLUMNS}
"""
FINISH_MESSAGE = f"""
update public.messages set content = $2, metadata = $3, tokens_used = $4, model = $5
where id = $1
returning {MESSAGE_COLUMNS}
"""
# Newest first; the caller reverses. Empty assistant placeholders (failed replies) are skipped.
SELECT_RECENT_MESSAGES = """
select id, role, content from public.messages
where conversation_id = $1 and role in ('user', 'assistant') and content <> ''
  and id <> all($3::uuid[])
order by created_at desc, id desc
limit $2
"""
TOUCH_CONVERSATION = "update public.conversations set updated_at = now() where id = $1"
EXPIRE_STALE_CHAT_JOBS = """
update public.ai_jobs set status = 'failed', error = 'abandoned', completed_at = now()
where conversation_id = $1 and job_type = 'chat' and status in ('pending', 'running')
  and created_at < now() - make_interval(secs => $2)
"""
INSERT_CHAT_JOB = """
insert into public.ai_jobs (user_id, project_id, conversation_id, job_type, status, input)
values ($1, $2, $3, 'chat', 'pending', $4)
returning id
"""
START_JOB = """
update public.ai_jobs set status = 'running', started_at = now(), model = $2 where id = $1
"""
FINISH_JOB = """
update public.ai_jobs
set status = $2, output = $3, error = $4, tokens_used = $5, model = $6, duration_ms = $7,
    completed_at = now()
where id = $1
"""
INSERT_AI_TOKENS_USAGE = """
insert into public.usage_records (user_id, workspace_id, resource_type, amount, unit, metadata)
values ($1, $2, 'ai_tokens', $3, 'tokens', $4)
"""
# The plan of the user's current subscription, if any (newest period first).
SELECT_SUBSCRIPTION_LIMITS = """
select sp.limits
from public.subscriptions s
join public.customers c on c.id = s.customer_id
join public.subscription_plans sp on sp.id = s.plan_id
where c.user_id = $1 and s.status in ('active', 'trialing') and s.current_period_end > now()
order by s.current_period_end desc
limit 1
"""
SELECT_FREE_PLAN_LIMITS = "select limits from public.subscription_plans where slug = 'free'"
# UTC calendar month, so the figure is the same on every server.
SELECT_AI_TOKENS_THIS_MONTH = """
select coalesce(sum(amount), 0)::bigint from public.usage_records
where user_id = $1 and resource_type = 'ai_tokens'
  and recorded_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc'
"""
SELECT_FILE = """
select id, project_id, path, name, language, type, is_deleted, content
from public.files where id = $1
"""


class ActiveJobExists(Exception):
    """Another chat job is pending or running in this conversation."""


@dataclass(frozen=True)
class ConversationInfo:
    id: uuid.UUID
    project_id: uuid.UUID
    workspace_id: uuid.UUID
    is_archived: bool


def message_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "conversation_id": str(row["conversation_id"]),
        "role": row["role"],
        "content": row["content"],
        "metadata": row["metadata"] or {},
        "tokens_used": row["tokens_used"],
        "model": row["model"],
        "created_at": row["created_at"].isoformat() if row["created_at"] else None,
    }


async def conversation_info(
    conn: asyncpg.Connection, conversation_id: uuid.UUID
) -> ConversationInfo | None:
    row = await conn.fetchrow(SELECT_CONVERSATION, conversation_id)
    if row is None:
        return None
    return ConversationInfo(
        row["id"], row["project_id"], row["workspace_id"], bool(row["is_archived"])
    )


async def insert_message(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    role: str,
    content: str,
    metadata: dict[str, Any],
    tokens_used: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        INSERT_MESSAGE, conversation_id, role, content, metadata, tokens_used, model
    )
    assert row is not None
    return message_dict(row)


async def finish_message(
    conn: asyncpg.Connection,
    message_id: uuid.UUID,
    content: str,
    metadata: dict[str, Any],
    tokens_used: int | None,
    model: str | None,
) -> dict[str, Any]:
    row = await conn.fetchrow(FINISH_MESSAGE, message_id, content, metadata, tokens_used, model)
    assert row is not None
    return message_dict(row)


async def recent_messages(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    limit: int,
    exclude: list[uuid.UUID],
) -> list[tuple[str, str]]:
    """(role, content) of the latest messages, oldest first."""
    rows = await conn.fetch(SELECT_RECENT_MESSAGES, conversation_id, limit, exclude)
    return [(row["role"], row["content"]) for row in reversed(rows)]


async def touch_conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> None:
    await conn.execute(TOUCH_CONVERSATION, conversation_id)


async def create_chat_job(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    conversation: ConversationInfo,
    job_input: dict[str, Any],
    stale_after_s: float,
) -> uuid.UUID:
    """A pending chat job; ``ActiveJobExists`` when one is already pending/running.

    Jobs older than ``stale_after_s`` are taken as abandoned (their process died) first.
    """
    await conn.execute(EXPIRE_STALE_CHAT_JOBS, conversation.id, stale_after_s)
    try:
        async with conn.transaction():
            job_id: uuid.UUID = await conn.fetchval(
                INSERT_CHAT_JOB, user_id, conversation.project_id, conversation.id, job_input
            )
    except asyncpg.UniqueViolationError as exc:
        raise ActiveJobExists(str(conversation.id)) from exc
    return job_id


async def start_job(conn: asyncpg.Connection, job_id: uuid.UUID, model: str) -> None:
    await conn.execute(START_JOB, job_id, model)


async def finish_job(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    *,
    status: str,
    output: dict[str, Any] | None,
    error: str | None,
    tokens_used: int | None,
    model: str | None,
    duration_ms: int,
) -> None:
    await conn.execute(
        FINISH_JOB, job_id, status, output, error, tokens_used, model, duration_ms
    )


async def record_ai_tokens(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    workspace_id: uuid.UUID,
    tokens: int,
    metadata: dict[str, Any],
) -> None:
    await conn.execute(INSERT_AI_TOKENS_USAGE, user_id, workspace_id, tokens, metadata)


def _ai_token_limit(limits: Any) -> int | None:
    if not isinstance(limits, dict) or limits.get("ai_tokens") is None:
        return None
    value = int(limits["ai_tokens"])
    return None if value < 0 else value


async def ai_token_allowance(
    conn: asyncpg.Connection, user_id: uuid.UUID
) -> tuple[int | None, int]:
    """(monthly limit or None for unlimited, tokens used this month) for the user's plan:
    the current subscription's plan, else the free plan."""
    limits = await conn.fetchval(SELECT_SUBSCRIPTION_LIMITS, user_id)
    if limits is None:
        limits = await conn.fetchval(SELECT_FREE_PLAN_LIMITS)
    used: int = await conn.fetchval(SELECT_AI_TOKENS_THIS_MONTH, user_id)
    return _ai_token_limit(limits), int(used)


async def file_row(conn: asyncpg.Connection, file_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_FILE, file_id)
