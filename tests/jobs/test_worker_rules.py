"""Per-job rules, with a worker in the test's event loop: concurrency limits, timeouts,
permanent failures, failure hooks, and a lost lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

import jobs
from jobs import JobContext, JobFailure, PermanentJobError, Worker, WorkerConfig
from persistence.db import Database
from tests.jobs.procs import eventually


class Item(BaseModel):
    n: int


StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(db: Database, database_url: str) -> AsyncIterator[StartWorker]:
    workers: list[Worker] = []

    async def start(job_list: list[jobs.Job[Any]], **config: Any) -> Worker:
        worker = Worker(db, job_list, dsn=database_url, config=WorkerConfig(**config))
        await worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.stop()


async def _statuses(db: Database, name: str) -> list[str]:
    async with db.acquire() as conn:
        return [r[0] for r in await conn.fetch(
            "select status from public.background_jobs where job_name = $1", name)]


async def test_a_per_name_concurrency_limit_holds_while_other_jobs_run(
    db: Database, start_worker: StartWorker
) -> None:
    running = {"limited": 0, "free": 0}
    peak = {"limited": 0, "free": 0}

    async def body(kind: str) -> None:
        running[kind] += 1
        peak[kind] = max(peak[kind], running[kind])
        await asyncio.sleep(0.2)
        running[kind] -= 1

    @jobs.job("t.limited", input=Item, job_type="sync", concurrency=2)
    async def limited(ctx: JobContext, payload: Item) -> None:
        await body("limited")

    @jobs.job("t.free", input=Item, job_type="sync")
    async def free(ctx: JobContext, payload: Item) -> None:
        await body("free")

    await start_worker([limited, free], concurrency=10)
    async with db.service() as conn:
        for n in range(8):
            await jobs.enqueue(conn, limited, Item(n=n))
            await jobs.enqueue(conn, free, Item(n=n))

    async def done() -> bool:
        return (await _statuses(db, "t.limited") + await _statuses(db, "t.free")) == \
            ["completed"] * 16

    await eventually(done, 30, "16 jobs")
    assert peak["limited"] == 2
    assert peak["free"] >= 4  # the limit of one name does not hold back the others


async def test_timeouts_permanent_errors_and_failure_hooks(
    db: Database, start_worker: StartWorker
) -> None:
    @jobs.job("t.slow", input=Item, job_type="sync", timeout=0.2, max_attempts=2,
              retry_base=0.05)
    async def slow(ctx: JobContext, payload: Item) -> None:
        await asyncio.sleep(30)

    @jobs.job("t.bad", input=Item, job_type="sync", max_attempts=5)
    async def bad(ctx: JobContext, payload: Item) -> None:
        raise PermanentJobError("this input can never work")

    failures: list[JobFailure] = []

    async def hook(failure: JobFailure) -> None:
        failures.append(failure)

    async def broken_hook(failure: JobFailure) -> None:
        raise RuntimeError("a reporter that fails must not stop the worker")

    worker = await start_worker([slow, bad])
    worker.on_failure.extend([broken_hook, hook])
    async with db.service() as conn:
        slow_id = await jobs.enqueue(conn, slow, Item(n=1))
        bad_id = await jobs.enqueue(conn, bad, Item(n=2))
        # Input that no longer matches the model (e.g. enqueued by an older release).
        stale_id = await conn.fetchval(
            "insert into public.background_jobs (job_name, job_type, input)"
            " values ('t.bad', 'sync', '{\"m\": 1}') returning id")

    async def all_failed() -> bool:
        return sorted(await _statuses(db, "t.slow") + await _statuses(db, "t.bad")) == \
            ["failed"] * 3

    await eventually(all_failed, 30, "three failed jobs")
    async with db.acquire() as conn:
        rows = {r["id"]: r for r in await conn.fetch(
            "select id, attempts, error from public.background_jobs")}
    assert rows[slow_id]["attempts"] == 2
    assert rows[slow_id]["error"].startswith("timed out after 0.2 s")
    assert rows[bad_id]["attempts"] == 1
    assert rows[bad_id]["error"].startswith("PermanentJobError: this input can never work")
    assert rows[stale_id]["attempts"] == 1 and "ValidationError" in rows[stale_id]["error"]
    seen = sorted((f.job_name, f.attempt, f.final) for f in failures)
    assert seen == [("t.bad", 1, True), ("t.bad", 1, True), ("t.slow", 1, False),
                    ("t.slow", 2, True)]
    assert all(f.exception is not None and f.error for f in failures)


async def test_a_worker_that_lost_its_lease_cancels_the_handler_and_writes_nothing(
    db: Database, start_worker: StartWorker
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @jobs.job("t.long", input=Item, job_type="sync")
    async def long(ctx: JobContext, payload: Item) -> dict[str, str]:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {"written": "never"}

    await start_worker([long], lease_s=0.6)
    async with db.service() as conn:
        job_id = await jobs.enqueue(conn, long, Item(n=1))
    await asyncio.wait_for(started.wait(), 10)
    # Another worker took the job over (as after a network partition longer than the lease).
    async with db.service() as conn:
        await conn.execute("update public.background_jobs set locked_by = 'other', attempts = 2,"
                           " locked_until = now() + interval '1 hour'"
                           " where id = $1", job_id)
    await asyncio.wait_for(cancelled.wait(), 10)
    async with db.acquire() as conn:
        row = await conn.fetchrow("select status, locked_by, output from public.background_jobs"
                                  " where id = $1", job_id)
    assert row is not None
    assert (row["status"], row["locked_by"], row["output"]) == ("running", "other", None)
