"""Document sync across real processes with stock y-websocket clients (Node)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from persistence.db import Database
from server.round_robin_proxy import RoundRobinProxy
from tests.cluster.conftest import ClusterWorld, StartNodes
from tests.cluster.node_clients import NodeClients
from tests.cluster.stored import doc_text, missing_from, stored_content, stored_doc
from tests.support.net import free_port

EMPTY_UPDATE = b"\x00\x00"


def markers(text: str) -> list[str]:
    return re.findall(r"\[[^\[\]]+\]", text)


async def wait_stored(db: Database, file_id: object, text: str, timeout_s: float) -> None:
    """The database (snapshot + log, and files.content after compaction) reaches ``text``."""
    deadline = time.monotonic() + timeout_s
    stored = content = None
    while time.monotonic() < deadline:
        stored = doc_text(await stored_doc(db, file_id))  # type: ignore[arg-type]
        content = await stored_content(db, file_id)  # type: ignore[arg-type]
        if stored == text and content == text:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"stored text differs: log={stored!r:.80} content={content!r:.80}")


@pytest.mark.parametrize("count", [2, 3])
async def test_clients_spread_over_nodes_converge_and_awareness_crosses(
    count: int,
    start_nodes: StartNodes,
    cluster_world: ClusterWorld,
    node_clients: NodeClients,
    db: Database,
) -> None:
    nodes = await start_nodes(count)
    room = str(cluster_world.file)
    ids = []
    for i in range(count * 2):
        node = nodes[i % count]
        ids.append(f"c{i}")
        await node_clients.open(f"c{i}", node.ws_url + "/ws/docs", room, cluster_world.token())
    await node_clients.call("storm", ids=ids, edits=25, interval_ms=8, timeout_s=60)
    text = await node_clients.converged(10)
    assert sorted(markers(text)) == sorted(f"[{c}:{k}]" for c in ids for k in range(25))
    assert len(text) == len("".join(markers(text)))

    await node_clients.call("awareness", id="c0", state={"user": {"name": "Ada"}, "cursor": 3})
    last = ids[-1]  # on another node than c0
    deadline = time.monotonic() + 5
    names: list[str] = []
    while time.monotonic() < deadline:
        states = (await node_clients.call("peers", id=last))["states"]
        names = [s.get("user", {}).get("name") for s in states.values() if s]
        if "Ada" in names:
            break
        await asyncio.sleep(0.05)
    assert "Ada" in names

    await wait_stored(db, cluster_world.file, text, 15)


async def test_kill_9_during_an_editing_storm_loses_nothing(
    start_nodes: StartNodes,
    cluster_world: ClusterWorld,
    node_clients: NodeClients,
    db: Database,
) -> None:
    nodes = await start_nodes(3)
    proxy = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", n.port) for n in nodes])
    await proxy.start()
    try:
        room = str(cluster_world.file)
        url = f"ws://127.0.0.1:{proxy.port}/ws/docs"
        ids = [f"k{i}" for i in range(6)]
        for client_id in ids:  # round robin: two clients per node
            await node_clients.open(client_id, url, room, cluster_world.token())
        storm = asyncio.create_task(
            node_clients.call("storm", ids=ids, edits=60, interval_ms=10, timeout_s=60)
        )
        await asyncio.sleep(0.3)
        victim = nodes[2]
        victim.kill()
        acknowledged = await stored_doc(db, cluster_world.file)  # what the log holds now
        await storm

        text = await node_clients.converged(20)
        expected = sorted(f"[{c}:{k}]" for c in ids for k in range(60))
        assert sorted(markers(text)) == expected, "every edit of every client survived"
        assert len(text) == len("".join(expected)), "nothing duplicated"
        reconnected = {e["id"] for e in node_clients.events if e.get("event") == "close"}
        assert len(reconnected) >= 2, "the killed node's clients reconnected elsewhere"

        await wait_stored(db, cluster_world.file, text, 20)
        final = await stored_doc(db, cluster_world.file)
        assert missing_from(final, acknowledged) == EMPTY_UPDATE, "no logged edit is missing"
        assert doc_text(final) == text
    finally:
        await proxy.close()


async def test_sigterm_flushes_rooms_and_sends_clients_elsewhere(
    start_nodes: StartNodes,
    cluster_world: ClusterWorld,
    node_clients: NodeClients,
    db: Database,
) -> None:
    one, two = await start_nodes(2)
    proxy = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", one.port),
                                                        ("127.0.0.1", two.port)])
    await proxy.start()
    try:
        token = cluster_world.token()
        ids = [f"p{i}" for i in range(4)]
        for client_id in ids:
            await node_clients.open(
                client_id, f"ws://127.0.0.1:{proxy.port}/ws/docs", str(cluster_world.file), token
            )
        # a file open only on node two: nobody else holds its edits when two stops
        await node_clients.open(
            "solo", two.ws_url + "/ws/docs", str(cluster_world.other_file), token
        )
        await node_clients.call("storm", ids=ids, edits=10, interval_ms=5)
        await node_clients.call("type", id="solo", text="[last words]")
        code = await two.terminate(20)
        assert code in (0, -15), two.output()[-2000:]

        first_close: dict[str, int] = {}
        for event in node_clients.events:
            if event.get("event") == "close":
                first_close.setdefault(event["id"], event["code"])
        # later closes of "solo" are its failed reconnects (1006): node two is gone
        assert set(first_close) - {"solo"} and "solo" in first_close
        assert all(code in (1001, 1012) for code in first_close.values()), first_close
        assert len(set(first_close) - {"solo"}) == 2, "node two's proxy clients"

        # the solo client cannot reconnect (its node is gone): only the flush saved it
        await node_clients.call("close", id="solo")
        assert await stored_content(db, cluster_world.other_file) == "seed\n[last words]"
        assert doc_text(await stored_doc(db, cluster_world.other_file)) == "seed\n[last words]"

        text = await node_clients.converged(15)
        assert sorted(markers(text)) == sorted(f"[{c}:{k}]" for c in ids for k in range(10))
        await wait_stored(db, cluster_world.file, text, 15)
    finally:
        await proxy.close()
