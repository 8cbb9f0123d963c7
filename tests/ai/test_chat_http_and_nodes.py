"""The SSE endpoint, /healthz, and a reply fanned out to watchers on another node."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ai.chat import ChatHub
from ai.chat_context import ChatError
from ai.chat_watchers import Delta, Watcher, coalesce
from ai.config import AIConfig
from ai.sse import SSEParser
from broker.interface import Broker
from broker.local import LocalBroker, LocalBus
from broker.redis_broker import RedisBroker
from persistence.db import Database
from tests.ai.conftest import fake_openai_config
from tests.ai.helpers import Team, token, wait_for
from tests.conftest import TEST_ORIGIN
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support.servers import LiveServer


async def test_sse_endpoint_streams_the_same_events(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    fake_openai.play(Script(chunks=openai_server.stream(["Hi", " there", " ✓"])))
    url = f"{chat_server.url}/api/v1/conversations/{team.conversation}/messages"
    headers = {"authorization": f"Bearer {token(team.member)}",
               "accept": "text/event-stream", "origin": TEST_ORIGIN}
    parser = SSEParser()
    events = []
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"content": "hello"}, headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["access-control-allow-origin"] == TEST_ORIGIN
            async for chunk in resp.content.iter_any():
                events += parser.feed(chunk)
        kinds = [e.event for e in events]
        assert kinds[:2] == ["message_created", "message_created"] and kinds[-1] == "done"
        assert set(kinds[2:-1]) == {"delta"}
        text = "".join(json.loads(e.data)["text"] for e in events[2:-1])
        assert text == "Hi there ✓"
        done = json.loads(events[-1].data)
        assert done["message"]["content"] == "Hi there ✓"
        # A viewer is refused, an outsider sees nothing, no token is 401.
        headers["authorization"] = f"Bearer {token(team.viewer)}"
        async with session.post(url, json={"content": "x"}, headers=headers) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
        headers["authorization"] = f"Bearer {token(team.outsider)}"
        async with session.post(url, json={"content": "x"}, headers=headers) as resp:
            assert resp.status == 404
        async with session.post(url, json={"content": "x"}) as resp:
            assert resp.status == 401
        # Without SSE: wait for the reply, answer with the stored messages.
        fake_openai.play(Script(chunks=openai_server.stream(["plain"])))
        headers = {"authorization": f"Bearer {token(team.owner)}"}
        async with session.post(url, json={"content": "again"}, headers=headers) as resp:
            assert resp.status == 201
            body = await resp.json()
        assert body["user_message"]["content"] == "again"
        assert body["message"]["content"] == "plain"
        async with session.get(chat_server.url + "/healthz") as resp:
            health = await resp.json()
        assert health["chat"]["provider"] == "openai" and health["chat"]["state"] == "ready"


def frames(watcher: Watcher) -> list[dict[str, object]]:
    out = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        if isinstance(item, Delta):
            item = item.frame
        if item is not None:
            out.append(json.loads(item))
    return out


@pytest.fixture(params=["local", "redis"])
async def two_brokers(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[list[Broker]]:
    """Two nodes' brokers: in-process on one bus, or Redis pub/sub."""
    if request.param == "local":
        bus = LocalBus()
        brokers: list[Broker] = [LocalBroker("node-a", bus), LocalBroker("node-b", bus)]
    else:
        brokers = [RedisBroker(redis_url, "node-a", prefix=redis_prefix),
                   RedisBroker(redis_url, "node-b", prefix=redis_prefix)]
    for broker in brokers:
        await broker.start()
    yield brokers
    for broker in brokers:
        await broker.close()


async def test_watchers_on_another_node_see_the_reply_and_late_joiners_catch_up(
    fake_openai: FakeOpenAI, team: Team, db: Database, tmp_path: Path,
    two_brokers: list[Broker],
) -> None:
    brokers = two_brokers
    config: AIConfig = fake_openai_config(fake_openai)
    hub_a = ChatHub.from_config(db, brokers[0], config, tmp_path)
    hub_b = ChatHub.from_config(db, brokers[1], config, tmp_path)
    fake_openai.play(Script(chunks=openai_server.stream([f"p{i} " for i in range(30)]),
                            delay_s=0.01))
    on_a, on_b, late_b = Watcher(), Watcher(), Watcher()
    await hub_a.watch(team.conversation, on_a)
    await hub_b.watch(team.conversation, on_b)
    created = await hub_a.submit(team.conversation, team.owner, "owner", "count to 30")
    message_id = created["message"]["id"]
    seen_b: list[dict[str, object]] = []
    await wait_for(lambda: len(seen_b.extend(frames(on_b)) or seen_b) > 6)  # type: ignore[func-returns-value]
    # A second question on the other node while A streams is busy.
    try:
        await hub_b.submit(team.conversation, team.member, "member", "me too")
        raise AssertionError("expected busy")
    except ChatError as exc:
        assert exc.code == "busy"
    await hub_b.watch(team.conversation, late_b)
    seen_a: list[dict[str, object]] = []
    seen_late: list[dict[str, object]] = []

    def finished(seen: list[dict[str, object]], watcher: Watcher) -> bool:
        seen.extend(frames(watcher))
        return any(e["type"] == "done" for e in seen)

    await wait_for(lambda: finished(seen_a, on_a) and finished(seen_b, on_b)
                   and finished(seen_late, late_b))

    def text(seen: list[dict[str, object]]) -> str:
        return "".join(str(e["text"]) for e in seen
                       if e["type"] == "delta" and e["message_id"] == message_id)

    expected = "".join(f"p{i} " for i in range(30))
    assert text(seen_a) == text(seen_b) == text(seen_late) == expected
    assert seen_late[0]["type"] == "message_created"
    assert [e["type"] for e in seen_b].count("message_created") == 2
    # Cancel from node B reaches the reply on node A.
    fake_openai.play(Script(chunks=openai_server.stream(["x "] * 500), delay_s=0.01))
    await hub_a.submit(team.conversation, team.owner, "owner", "forever")
    await wait_for(lambda: hub_b.rooms[team.conversation].mirror is not None
                   and hub_b.rooms[team.conversation].mirror.seq > 2)  # type: ignore[union-attr]
    assert await hub_b.cancel(team.conversation, "member") is True
    done: list[dict[str, object]] = []
    await wait_for(lambda: finished(done, on_b))
    last = [e for e in done if e["type"] == "done"][-1]
    assert last["cancelled"] is True
    for hub in (hub_a, hub_b):
        await hub.close()
    assert uuid.UUID(message_id)


def test_a_backlog_of_deltas_is_sent_as_one_frame() -> None:
    def delta(message: str, seq: int, text: str) -> Delta:
        return Delta(message, seq, text, json.dumps(
            {"type": "delta", "message_id": message, "seq": seq, "text": text}))

    frames = coalesce([delta("m", 1, "a"), delta("m", 2, "b"), delta("m", 3, "c"),
                       '{"type":"done"}', delta("n", 1, "x"), delta("o", 1, "y")])
    assert [json.loads(f) for f in frames] == [
        {"type": "delta", "message_id": "m", "seq": 3, "text": "abc"},
        {"type": "done"},
        {"type": "delta", "message_id": "n", "seq": 1, "text": "x"},
        {"type": "delta", "message_id": "o", "seq": 1, "text": "y"},
    ]
