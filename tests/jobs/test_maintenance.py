"""The housekeeping that used to be an in-process timer, now recurring jobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from jobs import Worker, WorkerConfig
from jobs.maintenance import JOBS
from persistence.db import Database
from server.settings import Settings
from tests.jobs.procs import eventually
from tests.support import factories
from tests.support.servers import LiveServer

COMPLETED = """
select job_name, output from public.background_jobs
where status = 'completed' and job_name like 'maintenance.%' order by job_name
"""


async def _seed(conn: asyncpg.Connection) -> dict[str, Any]:
    user = await factories.create_user(conn)
    project = await factories.create_project(conn, await factories.create_workspace(conn, user))
    analyses = """
    insert into public.code_analyses (project_id, file_path, analysis_type, result, expires_at)
    values ($1, $2, 'explain', '{}', now() + $3::text::interval) returning id
    """
    keep_analysis = await conn.fetchval(analyses, project, "/live.py", "1 hour")
    await conn.fetchval(analyses, project, "/old.py", "-1 minute")
    await conn.execute("insert into public.code_analyses (project_id, file_path, analysis_type,"
                       " result) values ($1, '/forever.py', 'explain', '{}')", project)
    session = await conn.fetchval(
        "insert into public.user_sessions_extended (user_id) values ($1) returning id", user)
    tokens = """
    insert into public.refresh_tokens (token_hash, user_id, session_id, expires_at, revoked_at,
                                       rotated_at)
    values ($1, $2, $3, now() + $4::text::interval, now() + $5::text::interval,
            now() + $6::text::interval)
    """
    await conn.execute(tokens, "live", user, session, "1 day", None, None)
    await conn.execute(tokens, "rotated", user, session, "1 day", None, "-1 hour")
    await conn.execute(tokens, "revoked-now", user, session, "1 day", "-1 hour", None)
    await conn.execute(tokens, "expired", user, session, "-1 second", None, None)
    await conn.execute(tokens, "revoked-long-ago", user, session, "1 day", "-2 days", None)
    await conn.execute(
        "insert into public.auth_attempts (email, succeeded, created_at) values"
        " ('a@x.test', false, now() - interval '2 days'), ('b@x.test', false, now())")
    await conn.execute(
        "insert into public.background_jobs (job_name, job_type, input, status, completed_at)"
        " values ('old.done', 'sync', '{}', 'completed', now() - interval '15 days'),"
        "        ('old.failed', 'sync', '{}', 'failed', now() - interval '15 days'),"
        "        ('recent.done', 'sync', '{}', 'completed', now() - interval '1 day')")
    await conn.execute(
        "insert into public.error_logs (error_type, message, severity, created_at) values"
        " ('Old', 'm', 'error', now() - interval '91 days'), ('New', 'm', 'error', now())")
    await conn.execute(
        "insert into public.performance_metrics (metric_name, metric_type, value, unit,"
        " recorded_at) values ('db.query.p50', 'db_query', 1, 'ms', now() - interval '91 days'),"
        " ('db.query.p50', 'db_query', 1, 'ms', now())")
    await conn.execute(
        "create table public.api_logs_p2020_01 partition of public.api_logs"
        " for values from ('2020-01-01 00:00+00') to ('2020-02-01 00:00+00')")
    await conn.execute("drop table public.api_logs_p" + await conn.fetchval(
        "select to_char((now() + interval '2 months') at time zone 'UTC', 'YYYY_MM')"))
    return {"keep_analysis": keep_analysis}


async def test_the_maintenance_jobs_do_their_work(db: Database, database_url: str) -> None:
    async with db.service() as conn:
        seeded = await _seed(conn)
    worker = Worker(db, JOBS, dsn=database_url, config=WorkerConfig(lease_s=5))
    await worker.start()
    try:
        async def all_ran() -> list[Any] | None:
            async with db.acquire() as conn:
                rows = await conn.fetch(COMPLETED)
            return rows if len(rows) == len(JOBS) else None

        outputs = {r["job_name"]: r["output"] for r in await eventually(all_ran, 30, "all jobs")}
    finally:
        await worker.stop()

    assert outputs["maintenance.code_analyses"] == {"deleted": 1}
    assert outputs["maintenance.refresh_tokens"] == {"deleted": 2}
    assert outputs["maintenance.auth_attempts"] == {"deleted": 1}
    assert outputs["maintenance.finished_jobs"] == {"deleted": 1}
    assert outputs["maintenance.observability"] == {"deleted": 2}
    assert outputs["maintenance.partitions"]["dropped"] == ["api_logs_p2020_01"]
    assert len(outputs["maintenance.partitions"]["created"]) == 1  # the one dropped above
    async with db.acquire() as conn:
        assert {r[0] for r in await conn.fetch("select file_path from public.code_analyses")} \
            == {"/live.py", "/forever.py"}
        assert await conn.fetchval("select id from public.code_analyses where file_path = "
                                   "'/live.py'") == seeded["keep_analysis"]
        assert {r[0] for r in await conn.fetch("select token_hash from public.refresh_tokens")} \
            == {"live", "rotated", "revoked-now"}
        assert [r[0] for r in await conn.fetch("select email from public.auth_attempts")] \
            == ["b@x.test"]
        assert {r[0] for r in await conn.fetch(
            "select job_name from public.background_jobs where job_name not like 'maint%'")} \
            == {"old.failed", "recent.done"}  # failed rows are kept 30 days
        # The next period of each is already queued: once a period, not once a process.
        waiting = await conn.fetch(
            "select job_name, period_start > now() as future from public.background_jobs"
            " where status = 'pending' order by job_name")
    assert [(r["job_name"], r["future"]) for r in waiting] == [(j.name, True) for j in
                                                              sorted(JOBS, key=lambda j: j.name)]


async def test_the_server_runs_a_worker_inside_unless_told_not_to(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    off = dataclasses.replace(
        settings, jobs=dataclasses.replace(settings.jobs, worker_in_process=False))
    await live_server(off)
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.background_jobs") == 0

    await live_server(settings)

    async def partitions_done() -> bool:
        async with db.acquire() as conn:
            return await conn.fetchval(
                "select count(*) from public.background_jobs where status = 'completed'"
                " and job_name = 'maintenance.partitions'") == 1

    await eventually(partitions_done, 30, "the in-process worker's first partitions run")
