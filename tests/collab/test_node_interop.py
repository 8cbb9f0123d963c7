"""The stock Node Yjs client (yjs + y-websocket + ws) against a live server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_for, wait_until
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


async def test_three_clients_converge_and_persist(live_server: StartServer,
                                                  world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("start\n")
    token = world.token(world.owner)
    agents = [await NodeAgent.start(server.ws_url, file_id, token) for _ in range(3)]
    try:
        for agent in agents:
            await agent.wait_synced()
            assert await agent.text() == "start\n"
        for round_ in range(10):
            await asyncio.gather(*(
                a.call("insert", index=round_ * 3 % 7, value=f"{i}{round_}|")
                for i, a in enumerate(agents)
            ))
        async def converged() -> bool:
            texts = [await a.text() for a in agents]
            return len(set(texts)) == 1 and len(texts[0]) == len("start\n") + 90
        await wait_until(converged)
        final = await agents[0].text()
        await wait_until(lambda: _equals(world.content(file_id), final))
    finally:
        for agent in agents:
            await agent.stop()


async def _equals(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def test_offline_edits_merge_on_reconnect(live_server: StartServer,
                                                world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("abc")
    token = world.token(world.owner)
    a = await NodeAgent.start(server.ws_url, file_id, token)
    b = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        await a.wait_synced()
        await b.wait_synced()
        await a.call("disconnect")
        await a.call("insert", index=0, value="offline-")
        await b.call("insert", index=3, value="-online")
        await wait_until(lambda: _equals(b.text(), "abc-online"))
        await a.call("connect")
        await wait_until(lambda: _equals(a.text(), "offline-abc-online"))
        await wait_until(lambda: _equals(b.text(), "offline-abc-online"))
    finally:
        await a.stop()
        await b.stop()


async def test_late_joiner_gets_full_text(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("")
    token = world.token(world.owner)
    a = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        await a.wait_synced()
        for i in range(50):
            await a.call("append", value=f"line {i}\n")
        expected = await a.text()
        late = await NodeAgent.start(server.ws_url, file_id, token)
        try:
            await late.wait_synced()
            assert await late.text() == expected
        finally:
            await late.stop()
    finally:
        await a.stop()


async def test_viewer_edits_do_not_spread(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("shared")
    viewer_id = await world.new_user("viewer")
    owner = await NodeAgent.start(server.ws_url, file_id, world.token(world.owner))
    viewer = await NodeAgent.start(server.ws_url, file_id, world.token(viewer_id))
    try:
        await owner.wait_synced()
        await viewer.wait_synced()
        await viewer.call("insert", index=0, value="VIEWER")
        await owner.call("append", value="!")
        await wait_until(lambda: _equals(viewer.text(), "VIEWERshared!"))
        assert await owner.text() == "shared!"
        await wait_until(lambda: _equals(world.content(file_id), "shared!"))
        assert viewer.close_codes() == []
    finally:
        await owner.stop()
        await viewer.stop()


async def test_awareness_arrives_and_is_removed(live_server: StartServer,
                                                world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("")
    token = world.token(world.owner)
    a = await NodeAgent.start(server.ws_url, file_id, token)
    b = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        await a.wait_synced()
        await b.wait_synced()
        await a.call("set_awareness", state={"user": {"name": "Ada"}, "cursor": 3})
        a_id = await a.call("client_id")

        async def b_sees_a() -> bool:
            states = await b.call("awareness")
            return states.get(str(a_id), {}).get("user") == {"name": "Ada"}
        await wait_until(b_sees_a)
        # A newcomer gets the known states on connect.
        c = await NodeAgent.start(server.ws_url, file_id, token)
        try:
            await c.wait_synced()
            await wait_until(lambda: _has(c, a_id))
            await a.stop()
            await wait_until(lambda: _gone(b, a_id))
            await wait_until(lambda: _gone(c, a_id))
        finally:
            await c.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_a_closing_client_takes_only_its_own_cursor(live_server: StartServer,
                                                          world: DocWorld) -> None:
    """Stock clients echo every awareness state they receive; when one of them closes,
    the server removes its own state, not the echoed ones (the others' cursors do not
    blink out)."""
    server = await live_server(world.settings)
    file_id = await world.new_file("")
    token = world.token(world.owner)
    agents = [await NodeAgent.start(server.ws_url, file_id, token) for _ in range(3)]
    a, b, c = agents
    try:
        ids = []
        for n, agent in enumerate(agents):
            await agent.wait_synced()
            await agent.call("set_awareness", state={"user": {"name": f"user{n}"}})
            ids.append(await agent.call("client_id"))
        for agent, own in zip(agents, ids, strict=True):  # everyone sees (and echoed) the others
            for other in ids:
                if other != own:
                    await wait_until(lambda agent=agent, other=other: _has(agent, other))
        await c.stop()
        await wait_until(lambda: _gone(a, ids[2]))
        await wait_until(lambda: _gone(b, ids[2]))
        await asyncio.sleep(0.3)  # a removal of the others would have come with c's
        # (a client told that its own state is gone re-announces it at once, so the cursors
        # would be back by now: what the others saw removed is the evidence)
        assert await a.call("awareness_removed") == [ids[2]]
        assert await b.call("awareness_removed") == [ids[2]]
        assert await _has(a, ids[1]) and await _has(b, ids[0])
    finally:
        for agent in agents:
            await agent.stop()


async def _has(agent: NodeAgent, client_id: int) -> bool:
    return str(client_id) in await agent.call("awareness")


async def _gone(agent: NodeAgent, client_id: int) -> bool:
    return str(client_id) not in await agent.call("awareness")


async def test_revoked_member_is_closed_4403(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("x")
    member_id = await world.new_user("member")
    agent = await NodeAgent.start(server.ws_url, file_id, world.token(member_id))
    try:
        await agent.wait_synced()
        async with world.db.acquire() as conn:
            await conn.execute(
                "delete from public.workspace_members where user_id = $1", member_id
            )
        await wait_for(lambda: 4403 in agent.close_codes(), timeout=2)
    finally:
        await agent.stop()


async def test_five_simultaneous_joins_of_a_new_document_all_sync(
    live_server: StartServer, world: DocWorld
) -> None:
    from tests.collab.test_ws_bad_input import served_text

    server = await live_server(world.settings)
    file_id = await world.new_file("built from text once\n")
    token = world.token(world.owner)
    texts = await asyncio.gather(*(served_text(server, file_id, token) for _ in range(5)))
    assert texts == ["built from text once\n"] * 5
    agents = [await NodeAgent.start(server.ws_url, file_id, token) for _ in range(2)]
    try:
        for agent in agents:
            await agent.wait_synced()
            assert await agent.text() == "built from text once\n"  # not duplicated
    finally:
        for agent in agents:
            await agent.stop()
