"""error_logs: a crash in a REST handler or a background task becomes a row with severity and
context; with SENTRY_DSN set, the event reaches Sentry (a local envelope endpoint) and its id
is the row's sentry_issue_id."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from pydantic import BaseModel

from jobs import JobContext, enqueue, job
from jobs.config import WorkerConfig
from observability.errors import ErrorReporter
from persistence.db import Database
from server.background import build_worker
from server.settings import Settings
from tests.api.client import Api
from tests.fakes.sentry_server import FakeSentry
from tests.support.observability import eventually, observed, rows
from tests.support.servers import LiveServer

ERRORS = "select * from public.error_logs order by created_at"


@pytest.fixture
async def sentry() -> AsyncIterator[FakeSentry]:
    fake = FakeSentry()
    await fake.start()
    yield fake
    await fake.stop()


async def _crash_profile_read(db: Database, server: LiveServer) -> tuple[str, str]:
    """A real fault: the schema drifts under the app, GET /me fails with a database error.
    Returns the user's id and token."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        user = await api.sign_up()
        async with db.acquire() as conn:
            await conn.execute("alter table public.users rename column bio to bio_gone")
        reply = await api.call("GET", "/me", token=user.token, params={"token": user.token})
        assert reply.status == 500
    return user.id, user.token


async def test_a_handler_crash_becomes_an_error_log_row(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await live_server(observed(settings, environment="test"))
    user_id, token = await _crash_profile_read(db, server)
    [row] = await eventually(lambda: rows(db, ERRORS), lambda r: len(r) >= 1, what="an error row")
    assert row["error_type"] == "UndefinedColumnError"
    assert "bio" in row["message"]
    assert row["severity"] == "error" and row["environment"] == "test"
    assert str(row["user_id"]) == user_id
    assert row["context"]["kind"] == "http" and row["context"]["route"] == "/api/v1/me"
    assert row["context"]["status"] == 500 and row["context"]["instance"]
    assert "Traceback" in row["stack_trace"] and "accounts" in row["stack_trace"]
    assert row["sentry_issue_id"] is None
    assert token not in json.dumps([dict(r) for r in await rows(db, ERRORS)], default=str)
    # uvicorn logs the same exception again: still one row.
    await server.stop()
    assert len(await rows(db, ERRORS)) == 1


async def test_a_crash_reaches_sentry_with_the_same_event_id(
    settings: Settings, db: Database, sentry: FakeSentry,
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server(observed(settings, sentry_dsn=sentry.dsn))
    user_id, token = await _crash_profile_read(db, server)
    [row] = await eventually(lambda: rows(db, ERRORS), lambda r: len(r) >= 1, what="an error row")
    event_id = row["sentry_issue_id"]
    assert event_id and len(event_id) == 32
    event = await sentry.wait_event(event_id)
    envelope = sentry.envelopes[0]
    assert envelope.project == "42" and envelope.header["event_id"] == event_id
    assert event["level"] == "error"
    [exception] = event["exception"]["values"]
    assert exception["type"] == "UndefinedColumnError"
    assert event["user"] == {"id": user_id}
    assert event["contexts"]["icreate"]["route"] == "/api/v1/me"
    assert all(token.encode() not in body for body in sentry.raw_bodies)


async def test_sentry_refusing_events_does_not_lose_the_row(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    overloaded = FakeSentry(status=429)
    await overloaded.start()
    try:
        server = await live_server(observed(settings, sentry_dsn=overloaded.dsn))
        await _crash_profile_read(db, server)
        [row] = await eventually(lambda: rows(db, ERRORS), lambda r: len(r) >= 1, what="a row")
        await overloaded.wait_event(row["sentry_issue_id"])
        assert row["error_type"] == "UndefinedColumnError"
    finally:
        await overloaded.stop()


async def test_a_background_task_failure_becomes_an_error_log_row(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    await live_server(observed(settings))

    async def doomed() -> None:
        raise LookupError("background work lost its way")

    task = asyncio.get_running_loop().create_task(doomed())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert task.done()
    del task  # never awaited: asyncio logs "Task exception was never retrieved" at ERROR
    gc.collect()
    [row] = await eventually(lambda: rows(db, ERRORS), lambda r: len(r) >= 1, what="an error row")
    assert row["error_type"] == "LookupError" and row["severity"] == "error"
    assert "background work lost its way" in row["message"]
    assert row["context"]["kind"] == "log" and row["context"]["logger"] == "asyncio"


class Doomed(BaseModel):
    reason: str


@job("test.doomed", input=Doomed, job_type="sync", max_attempts=2, retry_base=0.05,
     retry_max=0.1)
async def doomed_job(ctx: JobContext, payload: Doomed) -> None:
    raise ValueError(payload.reason)


async def test_job_failures_become_error_log_rows(
    settings: Settings, db: Database, database_url: str
) -> None:
    reporter = ErrorReporter(db, environment="test", instance_id="jobs-test", capacity=100)
    reporter.start()
    worker = build_worker(settings, db, [doomed_job], WorkerConfig(lease_s=5), errors=reporter)
    await worker.start()
    try:
        async with db.service() as conn:
            job_id = await enqueue(conn, doomed_job, Doomed(reason="no such repository"))
        found = await eventually(lambda: rows(db, ERRORS), lambda r: len(r) >= 2,
                                 what="two failed attempts")
    finally:
        await worker.stop()
        await reporter.stop()
    retried, final = found
    for row, severity, last in ((retried, "warning", False), (final, "error", True)):
        assert row["severity"] == severity and row["error_type"] == "ValueError"
        assert row["message"] == "no such repository"
        assert row["context"]["kind"] == "job" and row["context"]["job_name"] == "test.doomed"
        assert row["context"]["job_id"] == str(job_id) and row["context"]["final"] is last
        assert "doomed_job" in row["stack_trace"]
