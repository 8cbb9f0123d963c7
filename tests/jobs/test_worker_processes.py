"""The queue with real worker processes (``python -m server worker``) on real PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import jobs
from persistence.db import Database
from tests.jobs.handlers import Keyed, Sleepy, count, fail, sleepy
from tests.jobs.procs import WorkerProcess, eventually

StartWorker = Callable[..., WorkerProcess]


async def _job(db: Database, job_id: Any) -> Any:
    async with db.acquire() as conn:
        return await conn.fetchrow("select * from public.background_jobs where id = $1", job_id)


async def _runs(db: Database, job_name: str) -> list[Any]:
    async with db.acquire() as conn:
        return list(await conn.fetch(
            "select * from public.test_job_runs where job_name = $1 order by id", job_name))


async def _status_is(db: Database, job_id: Any, status: str) -> Any:
    row = await _job(db, job_id)
    return row if row is not None and row["status"] == status else None


async def test_three_workers_complete_a_thousand_jobs_each_exactly_once(
    job_db: Database, start_worker: StartWorker
) -> None:
    workers = [start_worker(f"w{i}") for i in range(3)]
    for worker in workers:
        await worker.ready()
    async with job_db.service() as conn:
        for key in range(1000):
            await jobs.enqueue(conn, count, Keyed(key=key))

    async def all_done() -> bool:
        async with job_db.acquire() as conn:
            return await conn.fetchval(
                "select count(*) from public.background_jobs where job_name = 'test.count'"
                " and status = 'completed'") == 1000

    await eventually(all_done, 90, "1000 completed jobs")
    async with job_db.acquire() as conn:
        per_job = await conn.fetch(
            "select job_id, count(*) as runs from public.test_job_runs group by job_id")
        assert len(per_job) == 1000 and {r["runs"] for r in per_job} == {1}
        assert await conn.fetchval("select count(*) from public.test_job_effects") == 1000
        assert await conn.fetchval(
            "select count(*) from public.background_jobs where attempts <> 1"
            " or locked_by is not null or output is null") == 0
        by_worker = await conn.fetch(
            "select split_part(worker, ':', 1) as w, count(*) from public.test_job_runs"
            " group by 1")
    assert len(by_worker) >= 2, by_worker  # the work was shared


async def test_a_job_whose_worker_is_killed_runs_again_after_its_lease_once(
    job_db: Database, start_worker: StartWorker
) -> None:
    lease = {"JOBS_LEASE": "1.5"}
    first = start_worker("victim", **lease)
    await first.ready()
    async with job_db.service() as conn:
        job_id = await jobs.enqueue(conn, sleepy, Sleepy(key=1, first_run_s=60))
    runs = await eventually(lambda: _runs(job_db, "test.sleepy"), 20, "the first run")
    assert runs[0]["worker"].startswith("victim:")
    os.kill(first.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    await first.exited(10)
    second = start_worker("survivor", **lease)

    done = await eventually(lambda: _status_is(job_db, job_id, "completed"), 30, "completion")
    runs = await _runs(job_db, "test.sleepy")
    assert [(r["attempt"], r["worker"].split(":")[0]) for r in runs] == [
        (1, "victim"), (2, "survivor")]
    assert runs[0]["finished_at"] is None and runs[1]["finished_at"] is not None
    assert done["attempts"] == 2 and done["locked_by"] is None
    async with job_db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.test_job_effects") == 1
    assert time.monotonic() - killed_at < 25
    await second.stop()


async def test_a_failing_job_backs_off_and_ends_failed_with_its_error(
    job_db: Database, start_worker: StartWorker
) -> None:
    await start_worker("w").ready()
    async with job_db.service() as conn:
        job_id = await jobs.enqueue(conn, fail, Keyed(key=5))

    failed = await eventually(lambda: _status_is(job_db, job_id, "failed"), 30, "failed")
    assert failed["attempts"] == 3 and failed["completed_at"] is not None
    assert failed["error"].startswith("RuntimeError: boom 5 on attempt 3")
    assert "Traceback" in failed["error"]
    runs = await _runs(job_db, "test.fail")
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    gaps = [(b["started_at"] - a["started_at"]).total_seconds() for a, b in pairwise(runs)]
    # retry_base 0.4 s: waits within [0.2, 0.4] then [0.4, 0.8] (half fixed, half jittered).
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps


async def test_sigterm_lets_a_running_job_finish_then_exits(
    job_db: Database, start_worker: StartWorker
) -> None:
    worker = start_worker("w", JOBS_SHUTDOWN_GRACE="10")
    await worker.ready()
    async with job_db.service() as conn:
        job_id = await jobs.enqueue(conn, sleepy, Sleepy(key=1, first_run_s=1.0))
    await eventually(lambda: _runs(job_db, "test.sleepy"), 20, "the run")
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert await worker.exited(15) == 0
    assert time.monotonic() - started < 10
    assert (await _job(job_db, job_id))["status"] == "completed"


async def test_sigterm_releases_a_job_longer_than_the_grace_period(
    job_db: Database, start_worker: StartWorker
) -> None:
    worker = start_worker("w", JOBS_SHUTDOWN_GRACE="1")
    await worker.ready()
    async with job_db.service() as conn:
        job_id = await jobs.enqueue(conn, sleepy, Sleepy(key=1, first_run_s=60))
    await eventually(lambda: _runs(job_db, "test.sleepy"), 20, "the run")
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert await worker.exited(15) == 0
    assert time.monotonic() - started < 1 + 2 + 3  # grace + cancel bound + slack
    released = await _job(job_db, job_id)
    assert (released["status"], released["attempts"], released["locked_by"]) == (
        "pending", 0, None)

    await start_worker("next").ready()
    done = await eventually(lambda: _status_is(job_db, job_id, "completed"), 20, "completion")
    assert done["attempts"] == 1


async def test_notify_starts_a_job_long_before_the_poll_would(
    job_db: Database, start_worker: StartWorker
) -> None:
    worker = start_worker("w", JOBS_POLL_INTERVAL="60")
    await worker.ready()
    latencies = []
    for key in range(5):
        async with job_db.service() as conn:
            job_id = await jobs.enqueue(conn, count, Keyed(key=key))
            created = await conn.fetchval("select clock_timestamp()")
        await eventually(lambda j=job_id: _status_is(job_db, j, "completed"), 30, "completion")
        async with job_db.acquire() as conn:
            started = await conn.fetchval(
                "select started_at from public.test_job_runs where job_id = $1", job_id)
        latencies.append((started - created).total_seconds())
    # The poll interval is 60 s: every job started on the NOTIFY. (Figures: bench/jobs.py.)
    assert max(latencies) < 3, latencies


async def test_a_recurring_job_runs_once_per_period_with_three_workers(
    job_db: Database, start_worker: StartWorker
) -> None:
    workers = [start_worker(f"w{i}", "tests.jobs.handlers:RECURRING",
                            JOBS_POLL_INTERVAL="30") for i in range(3)]
    for worker in workers:
        await worker.ready()

    async def periods() -> list[Any] | None:
        rows = await _runs(job_db, "test.tick")
        return rows if len({r["key"] for r in rows}) >= 5 else None

    await eventually(periods, 30, "five periods")
    for worker in workers:
        await worker.stop()
    runs = await _runs(job_db, "test.tick")
    keys = [r["key"] for r in runs]
    assert len(keys) == len(set(keys)), keys  # never twice in one period
    # Consecutive periods after the first: every period ran (chained rows + NOTIFY).
    ordered = sorted(keys)
    assert ordered[-1] - ordered[1] == len(ordered) - 2, ordered
    # Each run was in its own period.
    for run in runs:
        assert run["key"] <= run["started_at"].timestamp() < run["key"] + 2
