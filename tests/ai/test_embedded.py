"""The embedded default: the real llama.cpp server with SmolLM2-135M, real SSE.

The app runs here with ``PORT``, ``HOST`` and other settings llama.cpp's server reads from
its environment set to values that would break it (the port taken, every interface, an
API key it would then demand, a config file that does not exist): its child gets an
explicit minimal environment and listens on 127.0.0.1 whatever ``HOST`` is.
"""

from __future__ import annotations

import dataclasses
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from ai.child_env import BASE_NAMES
from ai.config import AIConfig
from persistence.db import Database
from server.settings import Settings
from tests.ai.edit_helpers import ProjectEvents, Typist, call
from tests.ai.helpers import Team, connect, token
from tests.collab.node_agent import NodeAgent, wait_until
from tests.support import factories
from tests.support.servers import LiveServer

HOSTILE_ENV = {"HOST": "0.0.0.0", "API_KEY": "sk-model-would-demand-this",
               "CONFIG_FILE": "/nonexistent/llama.json", "JWT_SECRET": "must-not-leak"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


# A real model on a shared 2-core machine: generous, but a hang still fails.
@pytest.mark.timeout(300)
async def test_embedded_model_streams_a_reply_in_several_deltas_and_stores_it(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    team: Team,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("PORT", str(taken.getsockname()[1]))
        for name, value in HOSTILE_ENV.items():
            monkeypatch.setenv(name, value)
        ai = AIConfig(embedded=True, max_output_tokens=24)
        server = await live_server(dataclasses.replace(settings, ai=ai))
        slot = server.app.state.services.chat.slot
        assert await slot.server.wait_ready(120), slot.health()
        client = await connect(server.ws_url, team.conversation, team.owner)
        await client.ask("Write one short sentence about Python.")
        done = await client.until_finished(timeout=240)
    assert done["type"] == "done", done
    message = done["message"]
    deltas = [e for e in client.events if e["type"] == "delta"]
    assert len(deltas) >= 3
    assert "".join(d["text"] for d in deltas) == message["content"] != ""
    assert message["model"].startswith("SmolLM2-135M-Instruct")
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "select tokens_used, metadata from public.messages where id = $1",
            uuid.UUID(message["id"]))
        total = await conn.fetchval(
            "select sum(amount) from public.usage_records where user_id = $1", team.owner)
    assert row["tokens_used"] > 0 and total > row["tokens_used"]
    assert row["metadata"]["finish_reason"] in ("stop", "length")
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        health = await resp.json()
    assert health["chat"]["provider"] == "embedded" and health["chat"]["state"] == "ready"

    model = slot.server
    assert model.port is not None and listening_addresses(model.port) == {"0100007F"}
    environ = Path(f"/proc/{model.pid}/environ").read_bytes().split(b"\0")
    names = {item.split(b"=", 1)[0].decode() for item in environ if item}
    assert names <= BASE_NAMES and "PATH" in names
    await client.close()


@pytest.mark.timeout(300)
async def test_embedded_model_edits_the_document_while_a_node_client_types(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    team: Team,
    db: Database,
) -> None:
    """The same edit path with the real llama.cpp server: the text it streams is what lands
    in the document, between the untouched text around the range, and a Node client typing
    meanwhile loses nothing."""
    ai = AIConfig(embedded=True, max_output_tokens=32)
    server = await live_server(dataclasses.replace(settings, ai=ai))
    slot = server.app.state.services.chat.slot
    assert await slot.server.wait_ready(120), slot.health()
    head, body, tail = "# start\n", "def add(a, b):\n    return a+b\n", "# end\n"
    async with db.service() as conn:
        file_id = await factories.create_file(conn, team.project, "calc.py", head + body + tail)
    events = await ProjectEvents.open(server, team.project, team.owner)
    agent = await NodeAgent.start(server.ws_url, file_id, token(team.member))
    typist = Typist(agent, 0xAC00, random.Random(5))
    try:
        await agent.wait_synced()
        status, answer = await call(server, team.owner, "POST", f"/files/{file_id}/ai-edits", {
            "instruction": "add a docstring",
            "selection": {"from": len(head), "to": len(head + body)}})
        assert status == 202, answer
        for _ in range(6):
            await typist.type_between("# end", None)
            await typist.type_between(None, "# start")
        finished = await events.wait("ai_edit.finished", timeout=240, id=answer["edit"]["id"])
        assert finished["edit"]["outcome"] == "completed", finished

        async def same() -> bool:
            _, row = await call(server, team.owner, "GET", f"/files/{file_id}")
            return bool(row["content"] == await agent.text())

        await wait_until(same, 20)
        final = await agent.text()
    finally:
        await events.close()
        await agent.stop()
    async with db.acquire() as conn:
        job = await conn.fetchrow("select * from public.ai_jobs where id = $1",
                                  uuid.UUID(answer["edit"]["id"]))
    written = job["output"]["text"]
    assert job["status"] == "completed" and job["tokens_used"] > 0
    assert job["model"].startswith("SmolLM2-135M-Instruct")
    assert written and finished["edit"]["chars"] == len(written)
    without_typing = "".join(c for c in final if not typist.owns(c))
    assert without_typing == head + written + tail
    assert sorted(c for c in final if typist.owns(c)) == sorted(typist.typed)
