"""ai_jobs rows of the assistant's work outside chat (analyses, edits) and the user's
allowance for them. Service connections: the caller authorized the user for the project."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from persistence.ai import PLAN_COLUMNS, _ai_token_limit

SELECT_ALLOWANCE = f"""
select p.workspace_id, {PLAN_COLUMNS}
from public.projects p where p.id = $1
"""
INSERT_JOB = """
insert into public.ai_jobs (id, user_id, project_id, job_type, status, input, reserved_tokens,
                            model, started_at)
values (coalesce($8, gen_random_uuid()), $1, $2, $3, $4, $5, $6, $7,
        case when $4 = 'running' then now() end)
returning id
"""
START_JOB = """
update public.ai_jobs set status = 'running', started_at = coalesce(started_at, now())
where id = $1 and status in ('pending', 'running')
returning id
"""
SELECT_JOB = """
select id, user_id, project_id, job_type, status, input, output, error, tokens_used, model,
       duration_ms, started_at, completed_at, created_at
from public.ai_jobs where id = $1
"""
# An edit whose process died keeps its file's "one active edit" slot until this.
EXPIRE_STALE_EDITS = """
update public.ai_jobs set status = 'failed', error = 'abandoned', completed_at = now()
where (input ->> 'file_id') = $1::text and job_type in ('refactor', 'generate')
  and status in ('pending', 'running') and created_at < now() - make_interval(secs => $2)
"""


class ActiveEditExists(Exception):
    """Another AI edit of this file is pending or running."""


async def allowance(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[uuid.UUID, int | None, int] | None:
    """(workspace id, the user's monthly AI token limit or None, used); None: no project."""
    row = await conn.fetchrow(SELECT_ALLOWANCE, project_id, user_id)
    if row is None:
        return None
    return row["workspace_id"], _ai_token_limit(row["plan_limits"]), int(row["used"] or 0)


async def insert_job(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, project_id: uuid.UUID, job_type: str,
    status: str, job_input: dict[str, Any], reserve_tokens: int, model: str | None,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    try:
        inserted: uuid.UUID = await conn.fetchval(
            INSERT_JOB, user_id, project_id, job_type, status, job_input, reserve_tokens, model,
            job_id,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ActiveEditExists(str(job_input.get("file_id"))) from exc
    return inserted


async def expire_stale_edits(
    conn: asyncpg.Connection, file_id: uuid.UUID, stale_after_s: float
) -> bool:
    status = await conn.execute(EXPIRE_STALE_EDITS, file_id, stale_after_s)
    return not status.endswith(" 0")


async def start_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> bool:
    """Mark a pending job running; False when it is no longer pending or running."""
    return await conn.fetchval(START_JOB, job_id) is not None


async def get_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_JOB, job_id)
    return dict(row) if row is not None else None


SELECT_ANSWER = """
select m.content, m.role, c.project_id from public.messages m
join public.conversations c on c.id = m.conversation_id
where m.id = $1
"""


async def answer_text(
    conn: asyncpg.Connection, message_id: uuid.UUID
) -> tuple[str, str, uuid.UUID] | None:
    """(content, role, project id) of a chat message."""
    row = await conn.fetchrow(SELECT_ANSWER, message_id)
    return (row["content"], row["role"], row["project_id"]) if row is not None else None
