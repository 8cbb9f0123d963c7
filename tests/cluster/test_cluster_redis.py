"""Redis going away under a running cluster, and messages lost between processes.

Restart: the nodes keep serving their own clients, report ``degraded`` on /healthz and
``icreate_broker_connected 0`` in /metrics, reconnect (backoff capped at 2 s), publish
their rooms' Step1 and converge. Drops: the periodic state-vector exchange
(``GAP_REPAIR_S``) delivers updates a node never received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from broker.redis_broker import RedisBroker
from collab import protocol
from collab.config import CollabConfig
from server.settings import Settings
from tests.cluster.conftest import ClusterWorld, StartNodes
from tests.cluster.node_clients import NodeClients
from tests.cluster.private_redis import PrivateRedis
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_redis_restart_mid_session_degrades_then_converges_within_the_bound(
    private_redis: PrivateRedis,
    start_nodes: StartNodes,
    cluster_world: ClusterWorld,
    node_clients: NodeClients,
) -> None:
    one, two = await start_nodes(2, redis=private_redis.url)
    room = str(cluster_world.file)
    token = cluster_world.token()
    for client_id, node in (("a0", one), ("a1", one), ("b0", two), ("b1", two)):
        await node_clients.open(client_id, node.ws_url + "/ws/docs", room, token)
    await node_clients.call("type", id="a0", text="[before]")
    await node_clients.converged(10)

    private_redis.stop_process()
    for node in (one, two):
        await until(lambda n=node: _degraded(n.url), 10)  # type: ignore[misc]
        assert await metric(node.url, "icreate_broker_connected") == 0

    await node_clients.call("storm", ids=["a0", "a1", "b0", "b1"], edits=15, interval_ms=10)
    # each node still serves its own clients while Redis is down
    await until(lambda: _same(node_clients, "a0", "a1"), 5)
    await until(lambda: _same(node_clients, "b0", "b1"), 5)
    texts = await node_clients.texts()
    assert texts["a0"] != texts["b0"], "no fan-out without Redis"

    private_redis.start_process()
    restarted = time.monotonic()
    text = await node_clients.converged(15)
    elapsed = time.monotonic() - restarted
    # documented bound: reconnect backoff cap (2 s) + GAP_REPAIR_S (0.5 s here) + slack
    assert elapsed < 4.0, f"converged {elapsed:.2f}s after Redis came back"
    assert text.count("[") == 1 + 4 * 15
    for node in (one, two):
        await until(lambda n=node: _healthy(n.url), 5)  # type: ignore[misc]
        assert await metric(node.url, "icreate_broker_reconnects_total") >= 1
        assert await metric(node.url, "icreate_broker_dropped_total") >= 1


async def _degraded(url: str) -> bool:
    body = await health(url)
    return body["broker"]["healthy"] is False and body["status"] == "degraded"


async def _healthy(url: str) -> bool:
    body = await health(url)
    return body["broker"]["healthy"] is True and body["status"] == "ok"


async def _same(clients: NodeClients, a: str, b: str) -> bool:
    texts = await clients.texts()
    return texts[a] == texts[b]


def _is_update(channel: str, payload: bytes) -> bool:
    if not channel.startswith("doc:"):
        return False
    try:
        frame = protocol.parse_frame(payload)
    except protocol.ProtocolError:
        return False
    return frame.kind == protocol.MSG_SYNC and frame.sub == protocol.SYNC_UPDATE


async def test_updates_dropped_between_nodes_are_repaired_by_the_state_vector_exchange(
    live_server: StartServer,
    settings: Settings,
    redis_url: str,
    cluster_world: ClusterWorld,
    node_clients: NodeClients,
) -> None:
    repair_s = 0.5

    def node(instance: str) -> Settings:
        return dataclasses.replace(
            settings, redis_url=redis_url, instance_id=instance,
            collab=dataclasses.replace(CollabConfig(), gap_repair_s=repair_s),
        )

    one = await live_server(node(uuid.uuid4().hex[:16]))
    two = await live_server(node(uuid.uuid4().hex[:16]))
    broker_two = two.app.state.services.broker
    assert isinstance(broker_two, RedisBroker)
    room = str(cluster_world.file)
    token = cluster_world.token()
    await node_clients.open("a", one.ws_url + "/ws/docs", room, token)
    await node_clients.open("b", two.ws_url + "/ws/docs", room, token)

    # node two never receives another Update frame; Step1/Step2 (the repair) still pass
    dropped: list[bytes] = []

    def drop_updates(channel: str, payload: bytes) -> bool:
        if _is_update(channel, payload):
            dropped.append(payload)
            return False
        return True

    broker_two.filter = drop_updates
    latencies = []
    for i in range(5):
        await node_clients.call("type", id="a", text=f"[a{i}]")
        typed = time.monotonic()
        while (await node_clients.texts())["b"].count("[") <= i:
            assert time.monotonic() - typed < 5 * repair_s, "not repaired within the bound"
            await asyncio.sleep(0.02)
        latencies.append(time.monotonic() - typed)
    assert len(dropped) >= 5, "the updates really were dropped"
    assert broker_two.stats.dropped >= 5
    # repaired within GAP_REPAIR_S plus two broker round trips (and polling slack)
    assert max(latencies) < repair_s + 1.0, latencies
    await node_clients.converged(5)
