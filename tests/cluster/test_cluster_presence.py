"""The project channel across real processes: presence, expiry after kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from persistence.db import Database
from tests.cluster.conftest import ClusterWorld, StartNodes
from tests.cluster.project_client import ProjectClient
from tests.conftest import TEST_ORIGIN
from tests.support.servers import ProcessServer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def join(
    session: aiohttp.ClientSession, node: ProcessServer, world: ClusterWorld, user: object = None
) -> ProjectClient:
    token = world.token(world.member if user == "member" else world.owner)
    return await ProjectClient.connect(
        session, f"{node.ws_url}/ws/projects/{world.project}?token={token}", TEST_ORIGIN
    )


def joined(connection_id: str) -> object:
    return lambda m: m["type"] == "presence.join" and m["member"]["connection_id"] == connection_id


def left(connection_id: str) -> object:
    return lambda m: m["type"] == "presence.leave" and m["connection_id"] == connection_id


async def test_presence_spans_three_nodes_and_a_killed_node_users_expire(
    start_nodes: StartNodes, cluster_world: ClusterWorld, session: aiohttp.ClientSession
) -> None:
    one, two, three = await start_nodes(3)
    a = await join(session, one, cluster_world)
    b = await join(session, two, cluster_world, "member")
    c = await join(session, three, cluster_world)
    ids = {x.hello["connection_id"] for x in (a, b, c)}
    for watcher in (a, b, c):
        others = ids - {watcher.hello["connection_id"]}
        for other in others:
            await watcher.expect(joined(other), 5)  # type: ignore[arg-type]

    await c.send({"type": "open_file", "file_id": str(cluster_world.file)})
    for watcher in (a, b):
        update = await watcher.expect_type("presence.update")
        assert update["member"]["file_id"] == str(cluster_world.file)

    three.kill()  # no leave, no bye: only the missing heartbeats tell
    started = time.monotonic()
    for watcher in (a, b):
        await watcher.expect(left(c.hello["connection_id"]), 5)  # type: ignore[arg-type]
    # ttl = 3 x GAP_REPAIR_S (0.5 s) plus one heartbeat period to notice
    assert time.monotonic() - started < 4.0


async def test_sigterm_closes_sockets_for_reconnect_and_saves_editor_state(
    start_nodes: StartNodes,
    cluster_world: ClusterWorld,
    session: aiohttp.ClientSession,
    db: Database,
) -> None:
    one, two = await start_nodes(2)
    a = await join(session, one, cluster_world)
    b = await join(session, two, cluster_world, "member")
    await a.expect(joined(b.hello["connection_id"]), 5)  # type: ignore[arg-type]
    await b.send({
        "type": "editor_state",
        "open_files": [{"file_id": str(cluster_world.file), "cursor_position": 5,
                        "scroll_position": 0}],
        "active_file_id": str(cluster_world.file),
        "layout_state": {"split": "vertical"},
    })
    await b.send({"type": "ping"})
    await b.expect_type("pong")

    stopping = asyncio.create_task(two.terminate(20))
    code = await b.closed(10)
    assert code in (1001, 1012), code  # "going away" / "service restart": clients reconnect
    # uvicorn re-raises the signal after its graceful shutdown: -15 is a clean exit too
    assert await stopping in (0, -15), two.output()[-2000:]
    await a.expect(left(b.hello["connection_id"]), 3)  # type: ignore[arg-type]

    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "select active_file_id, layout_state from public.editor_sessions"
            " where user_id = $1 and project_id = $2",
            cluster_world.member, cluster_world.project,
        )
    assert row is not None, "the stopped node saved the pending editor state"
    assert row["active_file_id"] == cluster_world.file
    assert row["layout_state"] == {"split": "vertical"}

    # the user reconnects to the surviving node and gets the state back
    again = await join(session, one, cluster_world, "member")
    assert again.hello["editor_state"]["active_file_id"] == str(cluster_world.file)
