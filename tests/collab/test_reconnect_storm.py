"""A restart under many stock clients: every client reconnects by itself at about the same
moment (y-websocket's backoff has no jitter), all sync the right text, none is refused, and
each document is loaded from PostgreSQL once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster.node_clients import NodeClients
from tests.collab.conftest import DocWorld
from tests.support.net import free_port
from tests.support.servers import ProcessServer, server_env

DOCS = 20
CLIENTS_PER_DOC = 11
# Closes a client may see across a restart: the server's 1012 when it stops, and 1006 for
# each attempt while nothing listens. Anything else is a refusal.
RESTART_CLOSES = {1012, 1006}


async def metric(server: ProcessServer, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"{name} not in /metrics")


async def all_back(
    clients: NodeClients, expected: dict[str, str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Wait until every client is connected, synced and holds its document's text."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, dict[str, Any]] = {}
    wrong: list[str] = []
    while time.monotonic() < deadline:
        status = await clients.status()
        texts = await clients.texts()
        wrong = [
            cid
            for cid, s in status.items()
            if not (s["connected"] and s["synced"] and texts[cid] == expected[cid])
        ]
        if not wrong:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(wrong)} clients not back: {wrong[:5]} {status.get(wrong[0])}")


async def test_every_client_reconnects_after_a_restart(world: DocWorld, tmp_path: Path) -> None:
    env = server_env(world.settings, {"DOC_LOG_FLUSH_MS": "10"})
    port = free_port()
    first = ProcessServer(port, env, tmp_path / "first.log")
    await first.start()
    second: ProcessServer | None = None
    clients = NodeClients()
    await clients.start()
    try:
        files = [await world.new_file(f"document {i}\n") for i in range(DOCS)]
        token = world.token(world.owner)
        url = first.ws_url + "/ws/docs"
        plan = [
            (f"{d}-{c}", file_id) for d, file_id in enumerate(files) for c in range(CLIENTS_PER_DOC)
        ]
        for start in range(0, len(plan), 50):
            await asyncio.gather(
                *(
                    clients.open(cid, url, str(file_id), token)
                    for cid, file_id in plan[start : start + 50]
                )
            )
        # One client per document types a line: the log holds rows when the server stops.
        expected: dict[str, str] = {}
        for d in range(DOCS):
            await clients.call("type", id=f"{d}-0", text=f"typed {d}\n")
        for cid, _ in plan:
            d = int(cid.split("-")[0])
            expected[cid] = f"document {d}\ntyped {d}\n"
        await all_back(clients, expected, 30)

        assert await first.terminate() == 0
        second = ProcessServer(port, env, tmp_path / "second.log")
        await second.start()
        status = await all_back(clients, expected, 60)

        closes = [code for s in status.values() for code in s["closes"]]
        assert set(closes) <= RESTART_CLOSES, closes
        assert sum(1 for code in closes if code == 1012) == len(plan)
        # Each document loaded once by the restarted process, however many sockets asked.
        assert await metric(second, "icreate_doc_loads_total") == DOCS
        assert await metric(second, "icreate_doc_rooms_loaded") == DOCS
        checks = await metric(second, "icreate_doc_access_checks_total")
        assert checks == len(plan)
        assert 1 <= await metric(second, "icreate_doc_access_queries_total") <= checks
    finally:
        await clients.close()
        first.kill()
        if second is not None:
            await second.terminate()
