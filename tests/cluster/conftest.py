"""Cluster fixtures: N real server processes sharing one database and one Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.cluster.node_clients import NodeClients
from tests.conftest import TEST_JWT_SECRET
from tests.support import factories
from tests.support.net import free_port
from tests.support.servers import ProcessServer, server_env

# Short periods so the tests see repair and expiry quickly (the defaults are 5 s / 15 s).
CLUSTER_ENV = {
    "GAP_REPAIR_S": "0.5",
    "DOC_COMPACT_AFTER_S": "0.5",
    "DOC_LOG_FLUSH_MS": "20",
    "WS_KEEPALIVE_S": "5",
}

StartNodes = Callable[..., Awaitable[list[ProcessServer]]]


@dataclass
class ClusterWorld:
    owner: uuid.UUID
    member: uuid.UUID
    project: uuid.UUID
    file: uuid.UUID
    other_file: uuid.UUID

    def token(self, user: uuid.UUID | None = None) -> str:
        user = user or self.owner
        return issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")


@pytest.fixture
async def cluster_world(db: Database) -> ClusterWorld:
    async with db.service() as conn:
        owner = await factories.create_user(conn, full_name="Owner")
        member = await factories.create_user(conn, full_name="Member")
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, member, "member")
        project = await factories.create_project(conn, ws)
        file_id = await factories.create_file(conn, project, "/main.py", "")
        other = await factories.create_file(conn, project, "/other.py", "seed\n")
    return ClusterWorld(owner, member, project, file_id, other)


@pytest.fixture
async def start_nodes(
    settings: Settings, redis_url: str, tmp_path: Path
) -> AsyncIterator[StartNodes]:
    """Factory: ``await start_nodes(3, redis_url=..., env={...})`` -> started processes."""
    started: list[ProcessServer] = []

    async def start(
        count: int, *, redis: str | None = None, env: dict[str, str] | None = None
    ) -> list[ProcessServer]:
        node_settings = dataclasses.replace(settings, redis_url=redis or redis_url)
        nodes = []
        for _ in range(count):
            instance = uuid.uuid4().hex[:16]
            node_env = server_env(node_settings, {**CLUSTER_ENV, "INSTANCE_ID": instance,
                                                  **(env or {})})
            node = ProcessServer(free_port(), node_env, tmp_path / f"node-{instance}.log")
            nodes.append(node)
        started.extend(nodes)
        await asyncio.gather(*(node.start() for node in nodes))
        return nodes

    yield start
    for node in started:
        await node.terminate(10)


@pytest.fixture
async def node_clients() -> AsyncIterator[NodeClients]:
    clients = NodeClients()
    await clients.start()
    yield clients
    await clients.close()
