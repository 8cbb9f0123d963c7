"""An AI edit across nodes: made on the node that took the request, its updates reach a
client of another node like anyone's, and a cancel sent to that other node rolls it back."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator

import pytest

from persistence.db import Database
from tests.ai.edit_helpers import Typist, call
from tests.cluster.conftest import ClusterWorld, StartNodes
from tests.collab.node_agent import NodeAgent, wait_until
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


async def test_edit_on_one_node_reaches_the_other_and_a_cancel_there_rolls_it_back(
    start_nodes: StartNodes, cluster_world: ClusterWorld, fake_openai: FakeOpenAI,
    db: Database,
) -> None:
    text = "top\n<<x = 1\ny = 2>>\nbottom\n"
    async with db.service() as conn:
        file_id = await factories.create_file(conn, cluster_world.project, "edit.py", text)
    fake_openai.play(Script(chunks=openai_server.stream(["1111\n", "2222\n", *["3"] * 400]),
                            delay_s=0.02))
    one, two = await start_nodes(2, env={
        "AI_BASE_URL": fake_openai.url, "AI_API_KEY": "sk-fake", "AI_MODEL": "gpt-fake-1"})
    agent = await NodeAgent.start(two.ws_url, file_id, cluster_world.token(cluster_world.member))
    typist = Typist(agent, 0xAC00, random.Random(3))
    try:
        await agent.wait_synced()
        status, body = await call(one, cluster_world.owner, "POST", f"/files/{file_id}/ai-edits",
                                  {"instruction": "digits", "selection": {
                                      "from": text.index("<<") + 2, "to": text.index(">>")}})
        assert status == 202, body
        edit_id = body["edit"]["id"]

        async def written() -> bool:
            return "2222" in await agent.text()

        await wait_until(written, 30)
        await typist.type_between("<<", ">>")
        await typist.type_between(None, "<<")
        status, _ = await call(two, cluster_world.member, "POST",
                               f"/ai-edits/{edit_id}/cancel", {"keep": False})
        assert status == 200

        async def rolled_back() -> bool:
            current = await agent.text()
            return "x = 1" in current and not re.search(r"\d{4}", current)

        await wait_until(rolled_back, 30)

        async def stored() -> bool:
            _, row = await call(one, cluster_world.owner, "GET", f"/ai-edits/{edit_id}")
            return bool(row["edit"]["status"] == "canceled")

        await wait_until(stored, 30)
        final = await agent.text()
    finally:
        await agent.stop()
    assert sorted(c for c in final if typist.owns(c)) == sorted(typist.typed)
    assert "".join(c for c in final if not typist.owns(c)) == text
    _, row = await call(one, cluster_world.owner, "GET", f"/ai-edits/{edit_id}")
    assert row["edit"]["output"]["outcome"] == "rolled_back"
