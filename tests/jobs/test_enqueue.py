"""Enqueueing inside the caller's transaction, dedupe keys, and the claim's index."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobs
from jobs import queries, stats
from persistence.db import Database
from tests.jobs.handlers import Keyed, count


async def _listener(database_url: str) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(database_url)
    await conn.add_listener("background_jobs", lambda *args: heard.put_nowait(args[3]))
    return conn, heard


async def test_a_rolled_back_enqueue_leaves_no_job_and_wakes_nobody(
    db: Database, database_url: str
) -> None:
    listener, heard = await _listener(database_url)
    try:
        with pytest.raises(RuntimeError):
            async with db.service() as conn:
                await jobs.enqueue(conn, count, Keyed(key=1))
                raise RuntimeError("the caller's change failed")
        async with db.service() as conn:
            job_id = await jobs.enqueue(conn, count, Keyed(key=2))
        # Notifications arrive in commit order: the committed job's is the first one heard.
        assert await asyncio.wait_for(heard.get(), 5) == "test.count"
        async with db.acquire() as conn:
            rows = await conn.fetch("select id, input from public.background_jobs"
                                    " where job_name = 'test.count'")
        assert [(r["id"], r["input"]) for r in rows] == [(job_id, {"key": 2})]
    finally:
        await listener.close()


async def test_a_job_is_queued_with_its_definition_and_the_callers_overrides(
    db: Database,
) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    async with db.service() as conn:
        job_id = await jobs.enqueue(conn, count, Keyed(key=3), priority=7, run_at=run_at,
                                    max_attempts=9)
        row = await conn.fetchrow("select * from public.background_jobs where id = $1", job_id)
    assert row is not None
    assert (row["job_name"], row["job_type"], row["status"], row["attempts"]) == (
        "test.count", "sync", "pending", 0)
    assert (row["priority"], row["max_attempts"], row["scheduled_for"]) == (7, 9, run_at)


async def test_a_dedupe_key_queues_one_job_until_it_finishes(db: Database) -> None:
    async with db.service() as conn:
        first = await jobs.enqueue(conn, count, Keyed(key=1), dedupe_key="k")
        again = await jobs.enqueue(conn, count, Keyed(key=2), dedupe_key="k")
        other = await jobs.enqueue(conn, count, Keyed(key=3), dedupe_key="other")
        assert again == first and other != first
        await conn.execute("update public.background_jobs set status = 'running' where id = $1",
                           first)
        assert await jobs.enqueue(conn, count, Keyed(key=4), dedupe_key="k") == first
        await conn.execute(
            "update public.background_jobs set status = 'completed' where id = $1", first)
        later = await jobs.enqueue(conn, count, Keyed(key=5), dedupe_key="k")
        assert later != first
        assert await conn.fetchval("select count(*) from public.background_jobs") == 3


async def test_enqueue_checks_the_payload_type_and_run_at_zone(db: Database) -> None:
    class Other(Keyed):
        pass

    async with db.service() as conn:
        with pytest.raises(TypeError):
            await jobs.enqueue(conn, count, {"key": 1})  # type: ignore[arg-type]
        await jobs.enqueue(conn, count, Other(key=1))  # a subclass is a Keyed
        with pytest.raises(ValueError, match="timezone"):
            await jobs.enqueue(conn, count, Keyed(key=1), run_at=datetime(2030, 1, 1))


async def test_the_claim_walks_its_index_without_sorting(db: Database) -> None:
    async with db.service() as conn:
        # Many finished rows and a few waiting ones: the claim must not look at the former.
        await conn.execute("""
            insert into public.background_jobs (job_name, job_type, input, status, priority,
                                                scheduled_for, completed_at)
            select 'test.count', 'sync', '{"key": 1}', 'completed', 0, now(), now()
            from generate_series(1, 20000)
        """)
        for i in range(50):
            await jobs.enqueue(conn, count, Keyed(key=i), priority=i % 3)
        await conn.execute("analyze public.background_jobs")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "explain " + queries.CLAIM, ["test.count"], [10], [0.0], 10, "w", 30.0))
    claim_scan = [line for line in plan.splitlines() if "b_1" in line or "Index" in line]
    assert any("idx_background_jobs_claim" in line for line in claim_scan), plan
    assert "Seq Scan on background_jobs" not in plan, plan
    # The lateral probe's ORDER BY is the index order: no Sort below the per-name Limit.
    lateral = plan[plan.index("Lateral") if "Lateral" in plan else 0:]
    assert "Sort Key: b_1.priority" not in lateral, plan


async def test_queue_depth_and_failures_per_job_name(db: Database) -> None:
    async with db.service() as conn:
        for i in range(3):
            await jobs.enqueue(conn, count, Keyed(key=i))
        await conn.execute("""
            insert into public.background_jobs (job_name, job_type, input, status, completed_at)
            values ('test.fail', 'sync', '{}', 'failed', now()),
                   ('test.fail', 'sync', '{}', 'failed', now()),
                   ('test.fail', 'sync', '{}', 'failed', now() - interval '2 hours')
        """)
        depth = await stats.queue_depth(conn)
        failures = await stats.failures(conn, datetime.now(UTC) - timedelta(hours=1))
    assert [(d.job_name, d.status, d.jobs) for d in depth] == [("test.count", "pending", 3)]
    assert [(f.job_name, f.failures) for f in failures] == [("test.fail", 2)]
