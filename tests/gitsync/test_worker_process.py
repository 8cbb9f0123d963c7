"""The git jobs in a worker process apart from the server (``python -m server worker``):
its own document hub joins the server's through Redis, so a pull it runs reaches an
editor open on the server, and it stops cleanly."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from jobs.config import JobsConfig
from server.settings import Settings
from tests.api.client import Api
from tests.collab.node_agent import NodeAgent, wait_until
from tests.fakes.git_http import GitHost
from tests.gitsync.conftest import TEST_KEY
from tests.gitsync.helpers import Stage, make_stage
from tests.jobs.procs import WorkerProcess
from tests.support.servers import LiveServer


@pytest.fixture
async def apart(
    live_server: Callable[..., Awaitable[LiveServer]], git_settings: Settings,
    redis_url: str, database_url: str, tmp_path: Path,
) -> AsyncIterator[tuple[Stage, WorkerProcess]]:
    settings = dataclasses.replace(git_settings, redis_url=redis_url,
                                   jobs=JobsConfig(worker_in_process=False))
    server = await live_server(settings)
    worker = WorkerProcess(
        database_url, "git-worker", tmp_path / "worker", "server.background:all_jobs",
        REDIS_URL=redis_url, REDIS_PREFIX=settings.redis_prefix, ENCRYPTION_KEYS=TEST_KEY,
        GIT_ALLOWED_HOSTS="127.0.0.1", GIT_ALLOW_HTTP="1",
        GIT_CACHE_DIR=str(tmp_path / "worker-git"),
        STORAGE_DIR=str(settings.storage.directory),
    )
    try:
        await worker.ready()
        async with aiohttp.ClientSession() as session:
            yield await make_stage(Api(session, server.url), server), worker
    finally:
        await worker.stop()


async def test_a_worker_apart_pulls_into_an_open_editor(
    apart: tuple[Stage, WorkerProcess], git_host: GitHost
) -> None:
    stage, worker = apart
    assert "git.pull" in "\n".join(worker.lines)  # it runs the git jobs
    git_host.create("acme/apart", {"app.py": "a = 1\n"}, token="tok")
    connected = await stage.connect(git_host.url("acme/apart"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    file_id = (await stage.tree())["app.py"]["id"]
    agent = await NodeAgent.start(stage.server.ws_url, file_id, stage.owner.token)
    try:
        await agent.wait_synced()
        await agent.call("append", value="b = 2\n")
        git_host.commit("acme/apart", {"app.py": "# remote\na = 1\n"})
        job = await stage.pull()
        assert job["status"] == "completed", job

        async def merged() -> bool:
            return bool(await agent.text() == "# remote\na = 1\nb = 2\n")

        await wait_until(merged, 20)
        job = await stage.push("From the worker", user=stage.member)
        assert job["status"] == "completed", job
        assert git_host.show("acme/apart", "main", "app.py") == b"# remote\na = 1\nb = 2\n"
    finally:
        await agent.stop()
    worker.signal(signal.SIGTERM)
    assert await worker.exited(30) == 0
