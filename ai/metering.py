"""The AI allowance for analyses and edits: reserve before the provider is asked, settle
after, with the same calls the chat makes (``persistence.ai.check_allowance`` in the
transaction that inserts the job with its reservation; ``finish_job`` and
``record_ai_tokens`` in the transaction that ends it). One place to change when the plan
limits move elsewhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from ai.providers.base import Usage
from persistence import ai as store
from persistence import ai_jobs as jobs_store


class QuotaExceeded(Exception):
    code = "quota_exceeded"

    def __init__(self, message: str, *, limit: int = 0, used: int = 0,
                 plan: str = "free") -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.used = used
        self.plan = plan


@dataclass(frozen=True)
class Reserved:
    job_id: uuid.UUID
    workspace_id: uuid.UUID
    tokens: int


async def reserve(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, project_id: uuid.UUID, job_type: str,
    job_input: dict[str, Any], model: str | None, tokens: int, stale_after_s: float,
    status: str = "pending", job_id: uuid.UUID | None = None,
) -> Reserved:
    """Check the allowance and insert the ai_jobs row holding ``tokens``, atomically.

    ``QuotaExceeded`` when the month's usage plus running reservations plus ``tokens``
    exceed the payer's limit (the workspace owner's plan);
    ``persistence.ai_jobs.ActiveEditExists`` from the job's own unique rules.
    """
    found = await jobs_store.allowance(conn, project_id, user_id)
    if found is None:
        raise LookupError(f"no project {project_id}")
    workspace_id, limit, used = found
    if limit is not None and used >= limit:
        raise QuotaExceeded(
            f"your plan's AI allowance for this month is used up ({used}/{limit} tokens)",
            limit=limit, used=used)
    async with conn.transaction():
        if limit is not None:
            try:
                await store.check_allowance(conn, project_id, tokens, stale_after_s)
            except store.AllowanceExhausted as exc:
                raise QuotaExceeded(
                    "your plan's AI allowance for this month cannot hold this request "
                    f"({exc.committed} of {exc.limit} tokens used or reserved, {tokens} asked)",
                    limit=exc.limit, used=exc.committed, plan=exc.plan) from None
        job_id = await jobs_store.insert_job(
            conn, user_id=user_id, project_id=project_id, job_type=job_type, status=status,
            job_input=job_input, reserve_tokens=tokens, model=model, job_id=job_id,
        )
    return Reserved(job_id, workspace_id, tokens)


async def settle(
    conn: asyncpg.Connection, job_id: uuid.UUID, *, user_id: uuid.UUID,
    workspace_id: uuid.UUID, status: str, output: dict[str, Any] | None, error: str | None,
    usage: Usage | None, model: str | None, duration_ms: int, metadata: dict[str, Any],
) -> None:
    """End the job and record what it really used, in one transaction."""
    async with conn.transaction():
        await store.finish_job(
            conn, job_id, status=status, output=output, error=error,
            tokens_used=usage.total if usage else None, model=model, duration_ms=duration_ms,
        )
        if usage is not None and usage.total > 0:
            await store.record_ai_tokens(conn, user_id, workspace_id, usage.total, {
                "job_id": str(job_id), "model": model, "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens, "estimated": usage.estimated, **metadata,
            })
