"""Per-minute series for the operator page. Run on a ``Database.as_user`` connection: RLS
(0087) limits every query to the workspaces the caller administers, or lets a service
operator see all; the ``workspace_id`` arguments only narrow that further.

Each query returns rows keyed by ``bucket`` (``date_bin(step, ..., epoch)``: the start of the
``step``-long bucket holding the row) for the buckets that have data; the caller lays them on
the full axis.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

# Requests, server errors and latency percentiles of one workspace, from its api_logs rows.
WORKSPACE_REQUESTS = """
select date_bin($3::interval, created_at, timestamptz 'epoch') as bucket,
       count(*) as requests,
       count(*) filter (where status_code >= 500) as server_errors,
       percentile_cont(0.5) within group (order by duration_ms) as p50,
       percentile_cont(0.95) within group (order by duration_ms) as p95,
       percentile_cont(0.99) within group (order by duration_ms) as p99
from public.api_logs
where created_at >= $1 and workspace_id = $2
group by 1
"""
# Server errors of the whole service (requests and latency come from performance_metrics).
SERVICE_SERVER_ERRORS = """
select date_bin($2::interval, created_at, timestamptz 'epoch') as bucket, count(*) as server_errors
from public.api_logs
where status_code >= 500 and created_at >= $1
group by 1
"""
ERRORS = """
select date_bin($3::interval, created_at, timestamptz 'epoch') as bucket, count(*) as errors
from public.error_logs
where created_at >= $1
  and ($2::uuid is null
       or project_id in (select p.id from public.projects p where p.workspace_id = $2))
group by 1
"""
USAGE = """
select date_bin($3::interval, recorded_at, timestamptz 'epoch') as bucket,
       coalesce(sum(amount) filter (where resource_type = 'ai_tokens'), 0) as ai_tokens,
       count(*) filter (where resource_type = 'executions') as executions
from public.usage_records
where recorded_at >= $1 and resource_type in ('ai_tokens', 'executions')
  and ($2::uuid is null or workspace_id = $2)
group by 1
"""
# Server-computed aggregates: each process writes one row per series and period; a minute's
# value is the sample-count-weighted mean over processes and periods, its count the sum.
# Route series other than all-routes ('*') are left out.
PERFORMANCE = """
select date_bin($3::interval, recorded_at, timestamptz 'epoch') as bucket, metric_name as name,
       sum(value * (tags->>'count')::numeric) / nullif(sum((tags->>'count')::numeric), 0)
         as value,
       sum((tags->>'count')::numeric) as samples
from public.performance_metrics
where recorded_at >= $1 and metric_name = any($2::text[])
  and coalesce(tags->>'route', '*') = '*'
group by 1, 2
"""
# The job queue: jobs waiting at the end of each bucket (due, not yet started) and jobs that
# failed for good during it ($1 is the first bucket's start, $2 the bucket length). A job
# waits from its due time (scheduled_for) until it starts (or ends): +1 then -1, summed per
# bucket and accumulated. The jobs that can matter (unfinished, or finished since $1) are
# read through the queue's partial indexes only (0080).
JOBS = """
with relevant as materialized (
  select coalesce(scheduled_for, created_at) as due, started_at, completed_at, status
  from public.background_jobs where status in ('pending', 'retrying', 'running')
  union all
  select coalesce(scheduled_for, created_at), started_at, completed_at, status
  from public.background_jobs where status in ('completed', 'failed') and completed_at >= $1
), changes as (
  select due as at, 1 as delta from relevant
  union all
  select least(started_at, completed_at), -1 from relevant
  where coalesce(started_at, completed_at) is not null
), per_bucket as (
  select greatest(date_bin($2::interval, at, timestamptz 'epoch'), $1) as bucket,
         sum(delta) as delta
  from changes group by 1
), failed as (
  select date_bin($2::interval, completed_at, timestamptz 'epoch') as bucket, count(*) as failed
  from relevant where status = 'failed' group by 1
), buckets as (
  select generate_series($1::timestamptz, now(), $2::interval) as bucket
)
select b.bucket,
       sum(coalesce(p.delta, 0)) over (order by b.bucket) as queued,
       coalesce(f.failed, 0) as failed
from buckets b
left join per_bucket p on p.bucket = b.bucket
left join failed f on f.bucket = b.bucket
"""
# Workspaces the caller may watch (admin or owner).
ADMIN_WORKSPACES = """
select w.id, w.name, m.role
from public.workspaces w
join public.workspace_members m on m.workspace_id = w.id and m.user_id = $1
where m.role in ('owner', 'admin')
order by w.name, w.id
"""


async def workspace_requests(
    conn: asyncpg.Connection, since: datetime, step: timedelta, workspace_id: uuid.UUID
) -> list[asyncpg.Record]:
    return list(await conn.fetch(WORKSPACE_REQUESTS, since, workspace_id, step))


async def service_server_errors(
    conn: asyncpg.Connection, since: datetime, step: timedelta
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SERVICE_SERVER_ERRORS, since, step))


async def errors(
    conn: asyncpg.Connection, since: datetime, step: timedelta, workspace_id: uuid.UUID | None
) -> list[asyncpg.Record]:
    return list(await conn.fetch(ERRORS, since, workspace_id, step))


async def usage(
    conn: asyncpg.Connection, since: datetime, step: timedelta, workspace_id: uuid.UUID | None
) -> list[asyncpg.Record]:
    return list(await conn.fetch(USAGE, since, workspace_id, step))


async def performance(
    conn: asyncpg.Connection, since: datetime, step: timedelta, names: list[str]
) -> list[asyncpg.Record]:
    return list(await conn.fetch(PERFORMANCE, since, names, step))


async def jobs(
    conn: asyncpg.Connection, since: datetime, step: timedelta
) -> list[asyncpg.Record]:
    return list(await conn.fetch(JOBS, since, step))


async def admin_workspaces(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(ADMIN_WORKSPACES, user_id))
