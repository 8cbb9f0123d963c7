"""Cheap reads for the operator's view: queue depth and failures per job name.

Both read partial indexes only (waiting, running and finished rows each have one), so they
stay cheap however many finished rows the table keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

QUEUE_DEPTH = """
select job_name, status, count(*) as jobs, min(scheduled_for) as oldest_due
from public.background_jobs where status in ('pending', 'retrying')
group by job_name, status
union all
select job_name, status, count(*), min(started_at)
from public.background_jobs where status = 'running'
group by job_name, status
order by job_name, status
"""
FAILURES = """
select job_name, date_bin($2::interval, completed_at, timestamptz 'epoch') as bucket,
       count(*) as failures
from public.background_jobs
where status in ('completed', 'failed') and completed_at >= $1 and status = 'failed'
group by job_name, bucket
order by bucket, job_name
"""


@dataclass(frozen=True)
class QueueDepth:
    job_name: str
    status: str  # pending, retrying or running
    jobs: int
    oldest: datetime | None  # oldest due time (waiting) or start (running)


@dataclass(frozen=True)
class FailureCount:
    job_name: str
    bucket: datetime  # start of the bucket
    failures: int


async def queue_depth(conn: asyncpg.Connection) -> list[QueueDepth]:
    """Unfinished jobs per (job name, status), with how long the oldest has waited."""
    rows = await conn.fetch(QUEUE_DEPTH)
    return [QueueDepth(r["job_name"], r["status"], r["jobs"], r["oldest_due"]) for r in rows]


async def failures(
    conn: asyncpg.Connection, since: datetime, bucket: timedelta = timedelta(minutes=1)
) -> list[FailureCount]:
    """Jobs that reached 'failed' since ``since``, per job name and time bucket."""
    rows = await conn.fetch(FAILURES, since, bucket)
    return [FailureCount(r["job_name"], r["bucket"], r["failures"]) for r in rows]
