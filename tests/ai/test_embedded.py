"""The embedded default: the real llama.cpp server with SmolLM2-135M, real SSE."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from ai.config import AIConfig
from persistence.db import Database
from server.settings import Settings
from tests.ai.helpers import Team, connect
from tests.support.servers import LiveServer


# A real model on a shared 2-core machine: generous, but a hang still fails.
@pytest.mark.timeout(300)
async def test_embedded_model_streams_a_reply_in_several_deltas_and_stores_it(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    team: Team,
    db: Database,
) -> None:
    ai = AIConfig(embedded=True, max_output_tokens=24)
    server = await live_server(dataclasses.replace(settings, ai=ai))
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
    await client.close()
