"""Jobs the worker tests run in real worker processes (``--jobs tests.jobs.handlers:JOBS``).

Every run leaves a row in test_job_runs (so a test counts executions) and its idempotent
effect in test_job_effects (one row per key however often the job runs).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from jobs import Job, JobContext, job

TABLES = """
create table public.test_job_runs (
  id bigserial primary key,
  job_id uuid not null,
  job_name text not null,
  key bigint not null,
  attempt int not null,
  worker text not null,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
);
create table public.test_job_effects (key bigint primary key, job_id uuid not null);
"""

START_RUN = """
insert into public.test_job_runs (job_id, job_name, key, attempt, worker)
values ($1, $2, $3, $4, $5) returning id
"""
FINISH_RUN = "update public.test_job_runs set finished_at = clock_timestamp() where id = $1"
EARLIER_RUNS = "select count(*) from public.test_job_runs where job_id = $1 and id < $2"
EFFECT = """
insert into public.test_job_effects (key, job_id) values ($1, $2) on conflict (key) do nothing
"""


class Keyed(BaseModel):
    key: int


class Sleepy(BaseModel):
    key: int
    first_run_s: float  # how long the job's first run sleeps; later runs finish at once


async def _start(ctx: JobContext, key: int) -> int:
    async with ctx.db.acquire() as conn:
        run_id: int = await conn.fetchval(
            START_RUN, ctx.job_id, ctx.job_name, key, ctx.attempt, ctx.worker_id
        )
    return run_id


async def _finish(ctx: JobContext, run_id: int, key: int) -> None:
    async with ctx.db.service() as conn:
        await conn.execute(EFFECT, key, ctx.job_id)
        await conn.execute(FINISH_RUN, run_id)


@job("test.count", input=Keyed, job_type="sync")
async def count(ctx: JobContext, payload: Keyed) -> dict[str, Any]:
    run_id = await _start(ctx, payload.key)
    await _finish(ctx, run_id, payload.key)
    return {"key": payload.key}


@job("test.sleepy", input=Sleepy, job_type="sync", max_attempts=5)
async def sleepy(ctx: JobContext, payload: Sleepy) -> None:
    run_id = await _start(ctx, payload.key)
    async with ctx.db.acquire() as conn:
        first = await conn.fetchval(EARLIER_RUNS, ctx.job_id, run_id) == 0
    if first:
        ctx.log.info("sleeping %.1f s", payload.first_run_s)
        await asyncio.sleep(payload.first_run_s)
    await _finish(ctx, run_id, payload.key)


@job("test.fail", input=Keyed, job_type="sync", max_attempts=3, retry_base=0.4, retry_max=5)
async def fail(ctx: JobContext, payload: Keyed) -> None:
    await _start(ctx, payload.key)
    raise RuntimeError(f"boom {payload.key} on attempt {ctx.attempt}")


class NoInput(BaseModel):
    pass


@job("test.tick", input=NoInput, job_type="cleanup", every=timedelta(seconds=1))
async def tick(ctx: JobContext, payload: NoInput) -> None:
    assert ctx.period_start is not None
    key = int(ctx.period_start.timestamp())
    run_id = await _start(ctx, key)
    await _finish(ctx, run_id, key)


JOBS: list[Job[Any]] = [count, sleepy, fail]
RECURRING: list[Job[Any]] = [tick]
