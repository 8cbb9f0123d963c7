"""The run queue through the API with real sandbox runs: caps per user, a newcomer before a
flood, queue positions in the 202, the GET and the project channel, a bounded queue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from execution.config import ExecutionConfig
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
SLEEPER = "import time\ntime.sleep(2)\n"


@dataclass
class Tenant:
    user: uuid.UUID
    project: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.user)}"}


def token(user: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")


async def tenant(db: Database) -> Tenant:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        project = await factories.create_project(conn, await factories.create_workspace(conn, user))
    return Tenant(user, project)


@dataclass
class Channel:
    """Execution events of one project channel, with when they arrived."""

    ws: aiohttp.ClientWebSocketResponse
    events: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            event = json.loads(msg.data)
            if str(event.get("type", "")).startswith("execution."):
                self.events.append((time.monotonic(), event))

    def when(self, kind: str, execution_id: str) -> float:
        for at, event in self.events:
            if event["type"] == kind and event["execution_id"] == execution_id:
                return at
        raise AssertionError(f"no {kind} for {execution_id}")

    def positions(self, execution_id: str) -> list[object]:
        return [e["queue_position"] for _, e in self.events
                if e["type"] == "execution.queued" and e["execution_id"] == execution_id]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def channel(session: aiohttp.ClientSession, server: LiveServer, who: Tenant) -> Channel:
    ws = await session.ws_connect(
        f"{server.ws_url}/ws/projects/{who.project}?token={token(who.user)}",
        headers={"Origin": TEST_ORIGIN},
    )
    opened = Channel(ws)
    opened.task = asyncio.create_task(opened.pump())
    return opened


async def test_a_newcomer_runs_before_a_flood_and_sees_its_place(
    live_server: StartServer, settings: Settings, exec_config: ExecutionConfig, db: Database,
    session: aiohttp.ClientSession,
) -> None:
    config = dataclasses.replace(exec_config, max_concurrent_runs=3, max_runs_per_user=2,
                                 max_runs_per_project=2, max_queued_per_user=1)
    server = await live_server(dataclasses.replace(settings, execution=config))
    flood, other, newcomer = await tenant(db), await tenant(db), await tenant(db)
    flood_channel = await channel(session, server, flood)
    newcomer_channel = await channel(session, server, newcomer)

    async def submit(who: Tenant, source: str, expect: int = 202) -> dict[str, object]:
        async with session.post(
            f"{server.url}/api/v1/projects/{who.project}/executions",
            json={"language": "python", "source_code": source, "wall_time_limit": 10},
            headers=who.headers,
        ) as resp:
            assert resp.status == expect, await resp.text()
            body: dict[str, object] = await resp.json()
        return body

    a1, a2, a3 = [await submit(flood, SLEEPER) for _ in range(3)]
    # The per-user cap holds the third run back although a slot is free...
    assert [a1["queue_position"], a2["queue_position"], a3["queue_position"]] == [0, 0, 1]
    # ... and the free slot goes to another tenant at once.
    b1 = await submit(other, SLEEPER)
    assert b1["queue_position"] == 0
    refused = await submit(flood, SLEEPER, expect=429)  # one waiting run per user here
    assert refused["error"]["code"] == "too_many_runs"  # type: ignore[index]
    # Every slot is taken: the newcomer is next, ahead of the flood's waiting run.
    c1 = await submit(newcomer, "print('light')")
    assert c1["queue_position"] == 1
    async with session.get(f"{server.url}/api/v1/executions/{a3['id']}",
                           headers=flood.headers) as resp:
        assert (await resp.json())["queue_position"] == 2

    hub = server.app.state.services.executions
    for run in (a1, a2, a3, b1, c1):
        await hub.wait(uuid.UUID(str(run["id"])), 30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(  # noqa: ASYNC110
        e["type"] == "execution.finished" and e["execution_id"] == a3["id"]
        for _, e in flood_channel.events
    ):
        await asyncio.sleep(0.05)
    for opened in (flood_channel, newcomer_channel):
        await opened.ws.close()
        assert opened.task is not None
        await opened.task

    # 1, then 2 behind the newcomer, then 1 again once the newcomer started.
    assert flood_channel.positions(str(a3["id"])) == [1, 2, 1]
    assert newcomer_channel.positions(str(c1["id"])) == [1]
    light_started = newcomer_channel.when("execution.started", str(c1["id"]))
    assert light_started < flood_channel.when("execution.started", str(a3["id"]))
    async with session.get(f"{server.url}/api/v1/executions/{c1['id']}",
                           headers=newcomer.headers) as resp:
        final = await resp.json()
    assert final["status"] == "accepted" and final["stdout"] == "light\n"
    assert final["queue_position"] is None
