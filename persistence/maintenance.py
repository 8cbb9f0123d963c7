"""Housekeeping queries: partitions ahead of time, expired rows deleted.

They run as recurring jobs (``jobs/maintenance.py``), once per period however many processes
run workers. The partition functions take a per-table advisory lock; the deletes go in
batches so no statement holds many row locks or runs long.
"""

from __future__ import annotations

import asyncpg

PARTITIONED_TABLES = ("public.analytics_events", "public.api_logs", "public.usage_records")
DEFAULT_MONTHS_AHEAD = 2
DEFAULT_RETENTION_DAYS = 90
DELETE_BATCH = 5000

CREATE_PARTITIONS = "select public.create_monthly_partitions($1::text::regclass, $2)"
DROP_PARTITIONS = (
    "select public.drop_old_partitions($1::text::regclass, make_interval(days => $2))"
)
DELETE_EXPIRED_CODE_ANALYSES = """
delete from public.code_analyses where id in (
  select id from public.code_analyses where expires_at < now() limit $1
)
"""
# Expired tokens can never be used again; revoked ones are kept a day (a reuse attempt in
# that time is still logged as a revoked token rather than an unknown one). Rotated but live
# tokens stay until they expire: presenting one again is how theft is detected.
DELETE_DEAD_REFRESH_TOKENS = """
delete from public.refresh_tokens where id in (
  select id from public.refresh_tokens
  where expires_at < now() or revoked_at < now() - make_interval(secs => $2)
  limit $1
)
"""
DELETE_OLD_AUTH_ATTEMPTS = """
delete from public.auth_attempts where id in (
  select id from public.auth_attempts where created_at < now() - make_interval(secs => $2)
  limit $1
)
"""
DELETE_FINISHED_JOBS = """
delete from public.background_jobs where id in (
  select id from public.background_jobs
  where status in ('completed', 'failed')
    and completed_at < now() - case when status = 'failed' then make_interval(secs => $3)
                                    else make_interval(secs => $2) end
  limit $1
)
"""


async def ensure_partitions(
    conn: asyncpg.Connection, months_ahead: int = DEFAULT_MONTHS_AHEAD
) -> list[str]:
    """Create the missing partitions from this month to +months_ahead; return their names."""
    created: list[str] = []
    for table in PARTITIONED_TABLES:
        async with conn.transaction():
            rows = await conn.fetch(CREATE_PARTITIONS, table, months_ahead)
        created.extend(r[0] for r in rows)
    return created


async def drop_expired_partitions(
    conn: asyncpg.Connection, retention_days: int = DEFAULT_RETENTION_DAYS
) -> list[str]:
    """Drop partitions whose whole month is older than the retention; return their names."""
    dropped: list[str] = []
    for table in PARTITIONED_TABLES:
        async with conn.transaction():
            rows = await conn.fetch(DROP_PARTITIONS, table, retention_days)
        dropped.extend(r[0] for r in rows)
    return dropped


async def delete_in_batches(conn: asyncpg.Connection, query: str, *args: object) -> int:
    """Run a ``delete ... limit $1`` statement until it deletes less than a batch."""
    total = 0
    while True:
        status = await conn.execute(query, DELETE_BATCH, *args)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < DELETE_BATCH:
            return total


# error_logs and performance_metrics are not partitioned: their rows past the retention (the
# seed's 90 days, as the partitioned logs) are deleted in batches.
DELETE_OLD_ERROR_LOGS = """
delete from public.error_logs where id in (
  select id from public.error_logs where created_at < now() - make_interval(days => $2)
  limit $1
)
"""
DELETE_OLD_PERFORMANCE_METRICS = """
delete from public.performance_metrics where id in (
  select id from public.performance_metrics
  where recorded_at < now() - make_interval(days => $2)
  limit $1
)
"""


async def delete_old_observability_rows(conn: asyncpg.Connection, retention_days: int) -> int:
    return (await delete_in_batches(conn, DELETE_OLD_ERROR_LOGS, retention_days)
            + await delete_in_batches(conn, DELETE_OLD_PERFORMANCE_METRICS, retention_days))


async def delete_expired_code_analyses(conn: asyncpg.Connection) -> int:
    return await delete_in_batches(conn, DELETE_EXPIRED_CODE_ANALYSES)


async def delete_dead_refresh_tokens(conn: asyncpg.Connection, revoked_kept_s: float) -> int:
    return await delete_in_batches(conn, DELETE_DEAD_REFRESH_TOKENS, revoked_kept_s)


async def delete_old_auth_attempts(conn: asyncpg.Connection, older_than_s: float) -> int:
    return await delete_in_batches(conn, DELETE_OLD_AUTH_ATTEMPTS, older_than_s)


async def delete_finished_jobs(
    conn: asyncpg.Connection, completed_kept_s: float, failed_kept_s: float
) -> int:
    return await delete_in_batches(conn, DELETE_FINISHED_JOBS, completed_kept_s, failed_kept_s)
