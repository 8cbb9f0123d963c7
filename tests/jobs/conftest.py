"""Fixtures: the test tables of ``handlers`` and a factory of real worker processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from persistence.db import Database
from tests.jobs import handlers
from tests.jobs.procs import WorkerProcess


@pytest.fixture
async def job_db(db: Database) -> Database:
    async with db.service() as conn:
        await conn.execute(handlers.TABLES)
    return db


@pytest.fixture
async def start_worker(
    database_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., WorkerProcess]]:
    """``start_worker("w1", JOBS_LEASE="2")``: a worker process running handlers.JOBS."""
    started: list[WorkerProcess] = []

    def start(name: str, jobs: str = "tests.jobs.handlers:JOBS", **env: str) -> WorkerProcess:
        worker = WorkerProcess(database_url, name, tmp_path / name, jobs, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        await worker.stop()
