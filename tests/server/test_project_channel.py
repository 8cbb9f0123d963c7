"""``/ws/projects/{id}``: presence, editor sessions, project events, bad input, across nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from collab.config import CollabConfig
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.cluster.project_client import ProjectClient as Client
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]


@dataclass
class World:
    owner: uuid.UUID
    member: uuid.UUID
    viewer: uuid.UUID
    stranger: uuid.UUID
    project: uuid.UUID
    other_project: uuid.UUID
    files: list[uuid.UUID]
    foreign_file: uuid.UUID


@pytest.fixture
async def world(db: Database) -> World:
    async with db.service() as conn:
        owner = await factories.create_user(conn, full_name="Ada Owner")
        member = await factories.create_user(conn)
        viewer = await factories.create_user(conn)
        stranger = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, member, "member")
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
        other = await factories.create_project(conn, ws)
        files = [await factories.create_file(conn, project, f"/src/f{i}.py") for i in range(3)]
        foreign = await factories.create_file(conn, other, "/x.py")
    return World(owner, member, viewer, stranger, project, other, files, foreign)


def token(user_id: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user_id), f"{user_id}@example.test")


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    session = aiohttp.ClientSession()
    clients: list[Client] = []

    async def open_client(server: LiveServer, project: uuid.UUID, user: uuid.UUID) -> Client:
        client = await Client.connect(
            session, f"{server.ws_url}/ws/projects/{project}?token={token(user)}", TEST_ORIGIN
        )
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.ws.close()
    await session.close()


async def close_code(server: LiveServer, path: str) -> int | None:
    async with aiohttp.ClientSession() as session, session.ws_connect(
        server.ws_url + path, headers={"Origin": TEST_ORIGIN}
    ) as ws:
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        return ws.close_code


async def test_presence_join_open_file_and_leave(
    live_server: StartServer, world: World, connect: Callable[..., Awaitable[Client]]
) -> None:
    server = await live_server()
    alice = await connect(server, world.project, world.owner)
    assert alice.hello["role"] == "owner"
    assert alice.hello["editor_state"] is None
    assert [m["user_id"] for m in alice.hello["presence"]] == [str(world.owner)]

    bob = await connect(server, world.project, world.member)
    assert {m["user_id"] for m in bob.hello["presence"]} == {str(world.owner), str(world.member)}
    joined = await alice.expect_type("presence.join")
    assert joined["member"]["user_id"] == str(world.member)
    assert joined["member"]["role"] == "member"

    await bob.send({"type": "open_file", "file_id": str(world.files[1])})
    update = await alice.expect_type("presence.update")
    assert update["member"]["file_id"] == str(world.files[1])

    await bob.ws.close()
    left = await alice.expect_type("presence.leave")
    assert left["connection_id"] == bob.hello["connection_id"]
    assert left["user_id"] == str(world.member)


async def test_viewers_watch_and_have_presence(
    live_server: StartServer, world: World, connect: Callable[..., Awaitable[Client]]
) -> None:
    server = await live_server()
    owner = await connect(server, world.project, world.owner)
    viewer = await connect(server, world.project, world.viewer)
    assert viewer.hello["role"] == "viewer"
    joined = await owner.expect_type("presence.join")
    assert joined["member"]["role"] == "viewer"
    hub = server.app.state.services.projects
    await hub.publish(world.project, {"type": "file.created", "file": {"id": world.files[0]}})
    event = await viewer.expect_type("file.created")
    assert event["file"]["id"] == str(world.files[0])


async def test_editor_state_is_saved_debounced_and_restored_on_reconnect(
    live_server: StartServer, world: World, connect: Callable[..., Awaitable[Client]], db: Database
) -> None:
    server = await live_server()
    client = await connect(server, world.project, world.member)
    state = {
        "type": "editor_state",
        "open_files": [
            {"file_id": str(world.files[0]), "cursor_position": {"line": 3, "column": 7},
             "scroll_position": 120},
            {"file_id": str(world.files[2]), "cursor_position": 0, "scroll_position": None},
            {"file_id": str(world.foreign_file), "cursor_position": 1, "scroll_position": 1},
        ],
        "active_file_id": str(world.files[2]),
        "layout_state": {"sidebar": 240, "panels": ["terminal"]},
    }
    for i in range(20):  # a burst of changes is saved once, after it settles
        state["layout_state"]["sidebar"] = 240 + i  # type: ignore[index]
        await client.send(state)
    await client.send({"type": "ping"})
    await client.expect_type("pong")
    hub = server.app.state.services.projects
    saves_before = hub.stats.saves
    deadline = time.monotonic() + 5
    row = None
    while row is None and time.monotonic() < deadline:
        async with db.acquire() as conn:
            row = await conn.fetchrow(
                "select open_files, active_file_id, layout_state from public.editor_sessions"
                " where user_id = $1 and project_id = $2", world.member, world.project,
            )
        await asyncio.sleep(0.05)
    assert row is not None
    assert hub.stats.saves - saves_before == 1
    assert [f["file_id"] for f in row["open_files"]] == [str(world.files[0]), str(world.files[2])]
    assert row["active_file_id"] == world.files[2]
    assert row["layout_state"] == {"sidebar": 259, "panels": ["terminal"]}

    await client.ws.close()
    again = await connect(server, world.project, world.member)
    restored = again.hello["editor_state"]
    assert restored["type"] == "editor_state"
    assert restored["active_file_id"] == str(world.files[2])
    assert restored["open_files"][0] == {
        "file_id": str(world.files[0]), "cursor_position": {"line": 3, "column": 7},
        "scroll_position": 120,
    }
    assert restored["layout_state"]["sidebar"] == 259
    mine = again.hello["connection_id"]
    me = next(m for m in again.hello["presence"] if m["connection_id"] == mine)
    assert me["file_id"] == str(world.files[2])


async def test_closing_the_socket_saves_at_once(
    live_server: StartServer, world: World, connect: Callable[..., Awaitable[Client]], db: Database
) -> None:
    server = await live_server()
    client = await connect(server, world.project, world.owner)
    await client.send({"type": "editor_state", "open_files": [], "active_file_id": None,
                       "layout_state": {"theme": "dark"}})
    await client.send({"type": "ping"})
    await client.expect_type("pong")
    await client.ws.close()
    deadline = time.monotonic() + 0.8  # well under the 1 s debounce
    layout = None
    while layout is None and time.monotonic() < deadline:
        async with db.acquire() as conn:
            layout = await conn.fetchval(
                "select layout_state from public.editor_sessions where user_id = $1", world.owner
            )
        await asyncio.sleep(0.02)
    assert layout == {"theme": "dark"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"no": "type"}), "invalid_message"),
        (json.dumps({"type": "launch_missiles"}), "unknown_type"),
        (json.dumps({"type": "open_file", "file_id": "nope"}), "invalid_message"),
        (json.dumps({"type": "editor_state", "open_files": {"a": 1}}), "invalid_message"),
        (json.dumps({"type": "editor_state", "open_files": [{"file_id": str(uuid.uuid4()),
                                                              "cursor_position": "x"}]}),
         "invalid_message"),
        (json.dumps({"type": "editor_state", "layout_state": [1]}), "invalid_message"),
        (json.dumps({"type": "ping", "pad": "x" * 70_000}), "too_large"),
        (b"\x00\x01binary", "invalid_message"),
    ],
)
async def test_bad_messages_get_an_error_and_the_socket_stays_open(
    live_server: StartServer,
    world: World,
    connect: Callable[..., Awaitable[Client]],
    frame: str | bytes,
    code: str,
) -> None:
    server = await live_server()
    client = await connect(server, world.project, world.member)
    await client.send(frame)
    error = await client.expect_type("error")
    assert error["code"] == code and error["message"]
    await client.send({"type": "ping"})
    await client.expect_type("pong")


async def test_refusals_use_the_documented_close_codes(
    live_server: StartServer, world: World
) -> None:
    server = await live_server()
    assert await close_code(server, f"/ws/projects/{world.project}") == 4401
    assert await close_code(server, f"/ws/projects/{world.project}?token=garbage") == 4401
    path = f"/ws/projects/{world.project}?token={token(world.stranger)}"
    assert await close_code(server, path) == 4403
    missing = f"/ws/projects/{uuid.uuid4()}?token={token(world.owner)}"
    assert await close_code(server, missing) == 4404
    assert await close_code(server, f"/ws/projects/not-a-uuid?token={token(world.owner)}") == 4404


async def test_events_published_by_rest_reach_only_that_project(
    live_server: StartServer, world: World, connect: Callable[..., Awaitable[Client]]
) -> None:
    server = await live_server()
    here = await connect(server, world.project, world.member)
    elsewhere = await connect(server, world.other_project, world.member)
    hub = server.app.state.services.projects
    with pytest.raises(ValueError):
        await hub.publish(world.project, {"no": "type"})
    await hub.publish(world.project, {"type": "file.renamed", "file": {"id": world.files[0],
                                                                      "name": "g.py"}})
    await hub.publish(world.other_project, {"type": "file.deleted", "file": {"id": "x"}})
    renamed = await here.expect_type("file.renamed")
    assert renamed["file"] == {"id": str(world.files[0]), "name": "g.py"}
    deleted = await elsewhere.expect_type("file.deleted")
    assert deleted["file"]["id"] == "x"
    await here.send({"type": "ping"})
    await here.expect_type("pong")
    assert not any(m["type"] == "file.deleted" for m in here.inbox)


def node_settings(settings: Settings, redis_url: str) -> Settings:
    return dataclasses.replace(
        settings,
        redis_url=redis_url,
        instance_id=uuid.uuid4().hex[:16],
        collab=dataclasses.replace(CollabConfig(), gap_repair_s=0.3),
    )


async def test_presence_and_events_cross_nodes_through_redis(
    live_server: StartServer,
    settings: Settings,
    redis_url: str,
    world: World,
    connect: Callable[..., Awaitable[Client]],
) -> None:
    one = await live_server(node_settings(settings, redis_url))
    two = await live_server(node_settings(settings, redis_url))
    alice = await connect(one, world.project, world.owner)
    bob = await connect(two, world.project, world.member)
    joined = await alice.expect(
        lambda m: m["type"] == "presence.join" and m["member"]["user_id"] == str(world.member)
    )
    assert joined["member"]["role"] == "member"
    # bob's node learns alice's presence from node one's heartbeat (answering its hello)
    await bob.expect(
        lambda m: m["type"] == "presence.join" and m["member"]["user_id"] == str(world.owner)
    )

    await bob.send({"type": "open_file", "file_id": str(world.files[0])})
    await alice.expect(
        lambda m: m["type"] == "presence.update" and m["member"]["file_id"] == str(world.files[0])
    )

    await one.app.state.services.projects.publish(
        world.project, {"type": "file.created", "file": {"id": world.files[1]}}
    )
    for client in (alice, bob):
        event = await client.expect_type("file.created")
        assert event["file"]["id"] == str(world.files[1])

    await bob.ws.close()
    left = await alice.expect_type("presence.leave")
    assert left["user_id"] == str(world.member)


async def test_a_file_created_over_rest_on_one_node_reaches_sockets_on_another(
    live_server: StartServer,
    settings: Settings,
    redis_url: str,
    world: World,
    connect: Callable[..., Awaitable[Client]],
) -> None:
    one = await live_server(node_settings(settings, redis_url))
    two = await live_server(node_settings(settings, redis_url))
    watcher = await connect(two, world.project, world.viewer)
    async with aiohttp.ClientSession() as session, session.post(
        f"{one.url}/api/v1/projects/{world.project}/files",
        json={"path": "new_module.py", "content": "x = 1\n"},
        headers={"Authorization": f"Bearer {token(world.member)}", "Origin": TEST_ORIGIN},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
        created = await resp.json()
    event = await watcher.expect_type("file.created")
    assert event["file"]["id"] == created["id"]
    assert event["file"]["path"] == created["path"]


async def test_role_changes_show_in_presence_and_revoked_members_are_closed(
    live_server: StartServer,
    world: World,
    connect: Callable[..., Awaitable[Client]],
    db: Database,
) -> None:
    server = await live_server()
    owner = await connect(server, world.project, world.owner)
    member = await connect(server, world.project, world.member)
    await owner.expect_type("presence.join")
    async with db.service() as conn:
        await conn.execute(
            "update public.workspace_members set role = 'viewer' where user_id = $1",
            world.member,
        )
    demoted = await owner.expect(
        lambda m: m["type"] == "presence.update" and m["member"]["user_id"] == str(world.member)
    )
    assert demoted["member"]["role"] == "viewer"

    async with db.service() as conn:
        await conn.execute("delete from public.workspace_members where user_id = $1", world.member)
    revoked = time.monotonic()
    assert await member.closed(5) == 4403
    assert time.monotonic() - revoked < 2.5  # role checks run every DOC_ROLE_CHECK_S (0.5 s)
    left = await owner.expect_type("presence.leave")
    assert left["user_id"] == str(world.member)
