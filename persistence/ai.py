"""Chat records: messages, ai_jobs, ai_tokens usage, and the user's plan allowance.

Every function takes a connection of the service (the chat hub has authorized the caller
already); SQL lives here as named constants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from billing import limits as billing_limits

MESSAGE_COLUMNS = "id, conversation_id, role, content, metadata, tokens_used, model, created_at"

FINISH_MESSAGE = f"""
update public.messages set content = $2, metadata = $3, tokens_used = $4, model = $5
where id = $1
returning {MESSAGE_COLUMNS}
"""
EXPIRE_STALE_CHAT_JOBS = """
update public.ai_jobs set status = 'failed', error = 'abandoned', completed_at = now()
where conversation_id = $1 and job_type = 'chat' and status in ('pending', 'running')
  and created_at < now() - make_interval(secs => $2)
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
# The plan limits of the payer of project p's workspace (its owner: billing_plan_of, grace and
# period end included) and the AI tokens recorded in the payer's workspaces this UTC month.
# (The callers' $2 is the requester; the allowance is the payer's, so $2 is only typed here.)
PLAN_COLUMNS = """
  (select bp.limits from public.workspaces w, public.billing_plan_of(w.owner_id) bp
   where w.id = p.workspace_id) as plan_limits,
  (select bp.slug from public.workspaces w, public.billing_plan_of(w.owner_id) bp
   where w.id = p.workspace_id) as plan_slug,
  (select public.billing_used(w.owner_id, 'ai_tokens_recorded') from public.workspaces w
   where w.id = p.workspace_id and $2::uuid is not null) as used"""
# Everything read before a reply, in one round trip: the conversation, the user's plan
# limits and usage (PLAN_COLUMNS), and the latest messages (oldest first; empty
# placeholders of failed replies skipped) for the prompt.
SELECT_REPLY_CHECKS = f"""
select c.id, c.project_id, p.workspace_id, c.is_archived, {PLAN_COLUMNS},
  (select coalesce(json_agg(json_build_object('role', h.role, 'content', h.content)
                            order by h.created_at, h.id), '[]'::json)
   from (select m.role, m.content, m.created_at, m.id from public.messages m
         where m.conversation_id = c.id and m.role in ('user', 'assistant')
           and m.content <> ''
         order by m.created_at desc, m.id desc
         limit $3) h
  ) as history
from public.conversations c join public.projects p on p.id = c.project_id
where c.id = $1
"""
# The job, the user's message and the assistant's placeholder in one statement. The job is
# running from the start: the provider is called right after, with no second round trip
# to mark it (which would compete with the provider request for the loop). Timestamps
# come from clock_timestamp() (now() is the same for a whole transaction) and the answer is
# placed strictly after the question, so history order never depends on random ids.
INSERT_REPLY_START = f"""
with job as (
  insert into public.ai_jobs
    (user_id, project_id, conversation_id, job_type, status, input, reserved_tokens,
     model, started_at)
  values ($1, $2, $3, 'chat', 'running', $4, $9, $8, now())
  returning id
), question as (
  insert into public.messages (conversation_id, role, content, metadata, created_at)
  select $3, 'user', $5, $6, clock_timestamp() from job
  returning {MESSAGE_COLUMNS}
), answer as (
  insert into public.messages (conversation_id, role, content, metadata, model, created_at)
  select $3, 'assistant', '', $7, $8, q.created_at + interval '1 microsecond' from question q
  returning {MESSAGE_COLUMNS}
), touched as (
  update public.conversations set updated_at = now() where id = $3
)
select (select id from job) as job_id, 0 as position, question.* from question
union all
select (select id from job), 1, answer.* from answer
order by position
"""
# Takes a reservation of the payer's monthly AI allowance (billing_take: the payer's lock,
# recorded usage plus running reservations plus this one must fit the limit), in the caller's
# transaction, before the job holding the reservation is inserted.
TAKE_AI_TOKENS = """
select public.billing_take((select workspace_id from public.projects where id = $1),
                           'ai_tokens', $2, $3)
"""
SELECT_FILE = """
select id, project_id, path, name, language, type, is_deleted, content
from public.files where id = $1
"""


class ActiveJobExists(Exception):
    """Another chat job is pending or running in this conversation."""


class AllowanceExhausted(Exception):
    """The payer's monthly AI allowance cannot hold this reservation: used up or reserved by
    work still running."""

    def __init__(self, committed: int, limit: int, plan: str = "free") -> None:
        super().__init__(f"{committed}/{limit} tokens")
        self.committed = committed
        self.limit = limit
        self.plan = plan


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


@dataclass(frozen=True)
class ReplyChecks:
    conversation: ConversationInfo
    ai_token_limit: int | None  # None: unlimited
    ai_tokens_used: int
    plan: str
    history: list[tuple[str, str]]  # (role, content), oldest first


async def reply_checks(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, user_id: uuid.UUID, history: int
) -> ReplyChecks | None:
    row = await conn.fetchrow(SELECT_REPLY_CHECKS, conversation_id, user_id, history)
    if row is None:
        return None
    return ReplyChecks(
        ConversationInfo(row["id"], row["project_id"], row["workspace_id"],
                         bool(row["is_archived"])),
        _ai_token_limit(row["plan_limits"]),
        int(row["used"] or 0),
        str(row["plan_slug"]),
        [(str(item["role"]), str(item["content"])) for item in row["history"]],
    )


async def start_reply(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    conversation: ConversationInfo,
    job_input: dict[str, Any],
    content: str,
    user_metadata: dict[str, Any],
    model: str,
    stale_after_s: float,
    *,
    token_limit: int | None = None,
    reserve_tokens: int = 0,
) -> tuple[uuid.UUID, dict[str, Any], dict[str, Any]]:
    """(job id, user message, assistant placeholder); ``ActiveJobExists`` when busy.

    With a ``token_limit``, the allowance check and the job (which reserves
    ``reserve_tokens``) are one transaction under the payer's lock: ``AllowanceExhausted``
    when this month's usage plus running reservations plus this one exceed the limit.
    A job older than ``stale_after_s`` (its process died) is expired and the insert retried.
    """
    args = (user_id, conversation.project_id, conversation.id, job_input, content,
            user_metadata, {"status": "streaming"}, model, reserve_tokens)
    for attempt in range(2):
        try:
            if token_limit is None:
                rows = await conn.fetch(INSERT_REPLY_START, *args)
            else:
                async with conn.transaction():
                    await check_allowance(conn, conversation.project_id, reserve_tokens,
                                          stale_after_s)
                    rows = await conn.fetch(INSERT_REPLY_START, *args)
            return rows[0]["job_id"], message_dict(rows[0]), message_dict(rows[1])
        except asyncpg.UniqueViolationError as exc:
            expired = await conn.execute(EXPIRE_STALE_CHAT_JOBS, conversation.id, stale_after_s)
            if attempt or expired.endswith(" 0"):
                raise ActiveJobExists(str(conversation.id)) from exc
    raise AssertionError("unreachable")


async def check_allowance(
    conn: asyncpg.Connection, project_id: uuid.UUID, reserve_tokens: int, stale_after_s: float
) -> None:
    """In the caller's transaction: take ``reserve_tokens`` of the allowance of the project's
    payer (their lock, held to the end of the transaction) or raise ``AllowanceExhausted``.
    The job that holds the reservation is inserted in the same transaction, after this."""
    try:
        await conn.fetchval(TAKE_AI_TOKENS, project_id, reserve_tokens, stale_after_s)
    except asyncpg.PostgresError as exc:
        reached = billing_limits.from_database(exc)
        if reached is None:
            raise
        raise AllowanceExhausted(reached.used, reached.limit, reached.plan) from None


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


async def file_row(conn: asyncpg.Connection, file_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_FILE, file_id)
