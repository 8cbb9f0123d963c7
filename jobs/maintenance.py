"""The recurring housekeeping jobs (they replaced the old in-process timer).

Each runs once per period across all worker processes: partitions daily, deletions hourly.
All are idempotent: running one twice deletes nothing more and creates nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from jobs.definition import Job, JobContext, job
from persistence import maintenance


class PartitionsInput(BaseModel):
    months_ahead: int = maintenance.DEFAULT_MONTHS_AHEAD
    retention_days: int = maintenance.DEFAULT_RETENTION_DAYS


class NoInput(BaseModel):
    pass


class AuthAttemptsInput(BaseModel):
    kept_s: float = 24 * 3600  # the sign-in limiter looks back 15 minutes


class RefreshTokensInput(BaseModel):
    revoked_kept_s: float = 24 * 3600


class FinishedJobsInput(BaseModel):
    # Longer than any recurring period (definition.MAX_PERIOD), or a period could run twice.
    completed_kept_s: float = 14 * 24 * 3600
    failed_kept_s: float = 30 * 24 * 3600


@job("maintenance.partitions", input=PartitionsInput, job_type="cleanup",
     every=timedelta(days=1), timeout=600)
async def partitions(ctx: JobContext, payload: PartitionsInput) -> dict[str, Any]:
    """Monthly partitions of the logs and analytics tables ahead; months past retention
    (90 days, the seed's note) dropped."""
    async with ctx.db.acquire() as conn:
        created = await maintenance.ensure_partitions(conn, payload.months_ahead)
        dropped = await maintenance.drop_expired_partitions(conn, payload.retention_days)
    if created or dropped:
        ctx.log.info("partitions created %s, dropped %s", created, dropped)
    return {"created": created, "dropped": dropped}


@job("maintenance.code_analyses", input=NoInput, job_type="cleanup", every=timedelta(hours=1))
async def code_analyses(ctx: JobContext, payload: NoInput) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        return {"deleted": await maintenance.delete_expired_code_analyses(conn)}


@job("maintenance.refresh_tokens", input=RefreshTokensInput, job_type="cleanup",
     every=timedelta(hours=1))
async def refresh_tokens(ctx: JobContext, payload: RefreshTokensInput) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        deleted = await maintenance.delete_dead_refresh_tokens(conn, payload.revoked_kept_s)
    return {"deleted": deleted}


@job("maintenance.auth_attempts", input=AuthAttemptsInput, job_type="cleanup",
     every=timedelta(hours=1))
async def auth_attempts(ctx: JobContext, payload: AuthAttemptsInput) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        return {"deleted": await maintenance.delete_old_auth_attempts(conn, payload.kept_s)}


@job("maintenance.finished_jobs", input=FinishedJobsInput, job_type="cleanup",
     every=timedelta(hours=1))
async def finished_jobs(ctx: JobContext, payload: FinishedJobsInput) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        deleted = await maintenance.delete_finished_jobs(
            conn, payload.completed_kept_s, payload.failed_kept_s
        )
    return {"deleted": deleted}


class ObservabilityRetentionInput(BaseModel):
    retention_days: int = maintenance.DEFAULT_RETENTION_DAYS


@job("maintenance.observability", input=ObservabilityRetentionInput, job_type="cleanup",
     every=timedelta(hours=1))
async def observability_retention(
    ctx: JobContext, payload: ObservabilityRetentionInput
) -> dict[str, Any]:
    """error_logs and performance_metrics past the retention (the partitioned logs and
    analytics go with their months, in ``partitions``)."""
    async with ctx.db.acquire() as conn:
        return {"deleted": await maintenance.delete_old_observability_rows(
            conn, payload.retention_days
        )}


JOBS: list[Job[Any]] = [
    partitions, code_analyses, refresh_tokens, auth_attempts, finished_jobs,
    observability_retention,
]
