"""A project's development variables reach runs and terminals; secret values never reach
their output (streamed, stored or recorded), even split across two chunks."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from execution.config import ExecutionConfig
from persistence.db import Database
from server.settings import Settings
from tests.execution.test_api import auth, sse_events
from tests.execution.test_terminals import Term, open_term  # noqa: F401 (fixture)
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
PASSWORD = "hunter2-correct-horse"
SHARED = "all-environments-secret"

PROGRAM = """
import os, sys, time
secret = os.environ["DB_PASSWORD"]
print(os.environ["GREETING"])
sys.stdout.write("pw=" + secret[:6]); sys.stdout.flush()
time.sleep(0.3)  # the rest arrives in another chunk
sys.stdout.write(secret[6:] + "\\n"); sys.stdout.flush()
print(os.environ.get("STAGING_ONLY"))
print(os.environ["SHARED"], file=sys.stderr)
"""


@pytest.fixture
def exec_settings(settings: Settings, exec_config: ExecutionConfig) -> Settings:
    return dataclasses.replace(settings, execution=exec_config)


async def setup_project(server: LiveServer, db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, owner)
        project = await factories.create_project(conn, ws)
    base = f"{server.url}/api/v1/projects/{project}/environment-variables"
    variables = [
        {"key": "DB_PASSWORD", "value": PASSWORD, "environment": "development"},
        {"key": "DB_PASSWORD", "value": "the-all-value-loses", "environment": "all"},
        {"key": "GREETING", "value": "hello", "environment": "development", "is_secret": False},
        {"key": "SHARED", "value": SHARED, "environment": "all"},
        {"key": "STAGING_ONLY", "value": "not-for-runs", "environment": "staging"},
    ]
    async with aiohttp.ClientSession() as session:
        for body in variables:
            async with session.post(base, json=body, headers=auth(owner)) as resp:
                assert resp.status == 201, await resp.text()
    return owner, project


async def test_a_run_gets_its_variables_and_secrets_are_masked(
    live_server: StartServer, exec_settings: Settings, db: Database
) -> None:
    server = await live_server(exec_settings)
    owner, project = await setup_project(server, db)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/v1/projects/{project}/executions",
            json={"language": "python", "source_code": PROGRAM}, headers=auth(owner),
        ) as resp:
            assert resp.status == 202, await resp.text()
            created = await resp.json()
        events = await sse_events(
            session, f"{server.url}/api/v1/executions/{created['id']}/events", owner
        )
        async with session.get(f"{server.url}/api/v1/executions/{created['id']}",
                               headers=auth(owner)) as resp:
            final = await resp.json()
    outputs = [e for e in events if e["type"] == "execution.output"]
    stdout = "".join(str(e["data"]) for e in outputs if e["stream"] == "stdout")
    stderr = "".join(str(e["data"]) for e in outputs if e["stream"] == "stderr")
    assert stdout == "hello\npw=*****\nNone\n", events
    assert stderr == "*****\n"
    assert final["stdout"] == stdout and final["stderr"] == stderr
    # The first half arrived alone (0.3 s before the rest) and was held back, not shown.
    assert any(str(e["data"]).endswith("pw=") for e in outputs), outputs
    for text in (str(events), str(final)):
        assert PASSWORD not in text and PASSWORD[:6] not in text and SHARED not in text
    async with db.acquire() as conn:
        stored = await conn.fetchval(
            "select stdout || stderr from public.code_executions where id = $1",
            uuid.UUID(created["id"]),
        )
    assert PASSWORD not in stored and "*****" in stored


async def test_a_terminal_gets_its_variables_and_secrets_are_masked(
    live_server: StartServer, exec_settings: Settings, db: Database,
    open_term: Callable[..., Awaitable[Term]],  # noqa: F811
) -> None:
    server = await live_server(exec_settings)
    owner, project = await setup_project(server, db)
    term = await open_term(server, project, owner)
    await term.read_until("$ ")
    await term.type('echo "[$GREETING] [$DB_PASSWORD] [$SHARED] [${STAGING_ONLY:-unset}]"')
    text = await term.read_until("[hello] [*****] [*****] [unset]")
    assert PASSWORD not in text and SHARED not in text
    deadline = time.monotonic() + 10
    recorded: list[str] = []
    while time.monotonic() < deadline and not recorded:
        async with db.acquire() as conn:
            recorded = [r["output"] for r in await conn.fetch(
                "select output from public.terminal_sessions where project_id = $1", project)]
        await asyncio.sleep(0.05)
    assert recorded == ["[hello] [*****] [*****] [unset]\n"]
