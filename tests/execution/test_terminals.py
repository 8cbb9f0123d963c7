"""Shared terminals over real PTYs through a live server: shared screen, viewers watch,
resize to the smallest client, reconnect with scrollback (queries not replayed), recorded
commands, idle timeout, and a flood that neither grows memory nor stalls other sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from execution.config import ExecutionConfig
from execution.terminals import READ_CHUNK, Client, TerminalHub
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from server.ws.terminals import MAX_FRAME
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.execution.procs import processes_of
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


@pytest.fixture
async def world(db: Database) -> World:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        member = await factories.create_user(conn)
        viewer = await factories.create_user(conn)
        stranger = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, member, "member")
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
        await factories.create_file(conn, project, "hello.txt", "hello from the project\n")
    return World(owner, member, viewer, stranger, project)


@pytest.fixture
def term_settings(settings: Settings, exec_config: ExecutionConfig) -> Settings:
    config = dataclasses.replace(exec_config, terminal_idle_timeout_s=0.3,
                                 terminal_send_buffer_bytes=256 * 1024)
    return dataclasses.replace(settings, execution=config)


@dataclass
class Term:
    ws: aiohttp.ClientWebSocketResponse
    frames: list[list[object]] = field(default_factory=list)
    text: str = ""
    close_code: int | None = None

    async def send(self, *frame: object) -> None:
        await self.ws.send_str(json.dumps(list(frame)))

    async def type(self, line: str) -> None:
        await self.send("stdin", line + "\r")

    async def read_until(self, needle: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.text[-500:]!r}")
            msg = await self.ws.receive(timeout=remaining)
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.close_code = self.ws.close_code
                raise AssertionError(f"socket closed ({self.ws.close_code}) before {needle!r}")
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if frame[0] == "stdout":
                self.text += str(frame[1])
        return self.text


@pytest.fixture
async def open_term() -> AsyncIterator[Callable[..., Awaitable[Term]]]:
    session = aiohttp.ClientSession()
    opened: list[Term] = []

    async def open_(server: LiveServer, project: uuid.UUID, user: uuid.UUID,
                    name: str = "main") -> Term:
        token = issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")
        ws = await session.ws_connect(
            f"{server.ws_url}/ws/projects/{project}/terminals/{name}?token={token}",
            headers={"Origin": TEST_ORIGIN},
        )
        term = Term(ws)
        opened.append(term)
        return term

    yield open_
    for term in opened:
        await term.ws.close()
    await session.close()


def within_bound(client: Client, settings: Settings) -> bool:
    """A client's unsent bytes: at most its bound plus the one frame that crossed it."""
    frame_max = 6 * READ_CHUNK + 64  # one PTY read, JSON-escaped at worst
    return client.outbox.buffered <= settings.execution.terminal_send_buffer_bytes + frame_max


def hub_of(server: LiveServer) -> TerminalHub:
    hub = server.app.state.services.terminals
    assert isinstance(hub, TerminalHub)
    return hub


async def first_frame(term: Term) -> list[object]:
    msg = await term.ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: list[object] = json.loads(msg.data)
    return frame


async def test_two_clients_share_one_screen_and_viewers_only_watch(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    owner = await open_term(server, world.project, world.owner)
    assert await first_frame(owner) == ["setup", {}]
    await owner.read_until("$ ")
    viewer = await open_term(server, world.project, world.viewer)
    assert await first_frame(viewer) == ["setup", {}]
    await owner.type("echo $((6*7)) $(id -u) $(cat hello.txt)")
    for term in (owner, viewer):
        await term.read_until("42 ")
    assert "hello from the project" in viewer.text
    uid = owner.text.split("42 ")[-1].split()[0]
    assert uid != "0"

    await viewer.type("touch /workspace/viewer-was-here")
    await owner.type("ls /workspace; echo listed")
    await owner.read_until("listed\r\n")
    assert "viewer-was-here" not in owner.text

    await owner.type("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), 1)\""
                     " || echo no-network")
    await owner.read_until("no-network\r\n")


async def test_outsiders_and_viewers_cannot_start_a_terminal(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    stranger = await open_term(server, world.project, world.stranger)
    msg = await stranger.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and stranger.ws.close_code == 4403
    viewer = await open_term(server, world.project, world.viewer, "fresh")
    msg = await viewer.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and viewer.ws.close_code == 4404


async def test_size_follows_the_smallest_client(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    wide = await open_term(server, world.project, world.owner)
    await wide.read_until("$ ")
    await wide.send("set_size", 30, 100)
    tall = await open_term(server, world.project, world.member)
    await tall.send("set_size", 40, 80)
    await wide.type("sleep 0.1; echo size=$(stty size)")
    await wide.read_until("size=30 80")
    await tall.ws.close()
    await wide.type("sleep 0.1; echo size=$(stty size)")
    await wide.read_until("size=30 100")


async def test_reconnect_gets_scrollback_without_terminal_queries(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    first = await open_term(server, world.project, world.owner)
    await first.read_until("$ ")
    await first.type("printf 'before-\\033[6n-\\033[c-after\\n'")
    await first.read_until("-\x1b[c-after")
    assert "before-\x1b[6n" in first.text  # the live client sees (and answers) the query once
    keeper = await open_term(server, world.project, world.member)  # keeps the shell alive
    await first.ws.close()

    again = await open_term(server, world.project, world.owner)
    assert await first_frame(again) == ["setup", {}]
    replay = await first_frame(again)
    assert replay[0] == "stdout"
    text = str(replay[1])
    assert "before---after" in text
    assert "\x1b[6n" not in text and "\x1b[c" not in text
    await keeper.ws.close()


async def test_commands_are_recorded_with_exit_codes_and_files_come_back(
    live_server: StartServer, term_settings: Settings, world: World, db: Database,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    term = await open_term(server, world.project, world.member)
    await term.read_until("$ ")
    await term.type("echo recorded-output")
    await term.read_until("recorded-output\r\n")
    await term.type("false")
    await term.type("mkdir -p sub && cd sub && ls /nonexistent")
    await term.type("echo made-in-terminal > made.txt; echo ok")
    await term.read_until("ok\r\n")
    deadline = time.monotonic() + 10
    rows: list[dict[str, object]] = []
    made = None
    while time.monotonic() < deadline:
        async with db.service() as conn:
            rows = [dict(r) for r in await conn.fetch(
                "select user_id, command, output, exit_code, duration_ms, working_directory "
                "from public.terminal_sessions where project_id = $1 order by created_at",
                world.project,
            )]
            made = await conn.fetchval(
                "select content from public.files where project_id = $1 and path = $2",
                world.project, "sub/made.txt",
            )
        if len(rows) >= 4 and made is not None:
            break
        await asyncio.sleep(0.05)
    commands = [(r["command"], r["exit_code"], r["working_directory"]) for r in rows]
    assert commands == [
        ("echo recorded-output", 0, "/workspace"),
        ("false", 1, "/workspace"),
        ("mkdir -p sub && cd sub && ls /nonexistent", 2, "/workspace"),
        ("echo made-in-terminal > made.txt; echo ok", 0, "/workspace/sub"),
    ]
    assert rows[0]["output"] == "recorded-output\n"
    assert "No such file or directory" in str(rows[2]["output"])
    assert all(r["user_id"] == world.member for r in rows)
    assert all(isinstance(r["duration_ms"], int) for r in rows)
    assert made == "made-in-terminal\n"


async def test_idle_terminal_is_killed(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    term = await open_term(server, world.project, world.owner)
    await term.read_until("$ ")
    hub = hub_of(server)
    assert len(hub.terminals) == 1
    terminal = next(iter(hub.terminals.values()))
    await term.ws.close()
    deadline = time.monotonic() + 5
    while hub.terminals and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert not hub.terminals
    assert await terminal.reaper.wait(5)


async def test_output_flood_neither_grows_memory_nor_stalls_others(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    hub = hub_of(server)
    fast = await open_term(server, world.project, world.owner)
    await fast.read_until("$ ")
    # A slow client: connected, never reads (aiohttp stops reading the socket when its
    # buffer is full, so the server's sends back up).
    slow = await open_term(server, world.project, world.member)
    other = await open_term(server, world.project, world.owner, "other")
    await other.read_until("$ ")

    await fast.type("yes flood-line | head -c 12000000; echo flood-$((40+2))-done")
    fast.text = ""
    received = 0
    deadline = time.monotonic() + 60
    while "flood-42-done" not in fast.text[-200:] and time.monotonic() < deadline:
        msg = await fast.ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT
        frame = json.loads(msg.data)
        if frame[0] == "stdout":
            received += len(frame[1])
            fast.text = fast.text[-1000:] + frame[1]
        # Meanwhile another terminal answers promptly.
        if received > 1_000_000 and "answer-" not in other.text:
            started = time.monotonic()
            await other.type("echo answer-$((1+1))")
            await other.read_until("answer-2")
            assert time.monotonic() - started < 5
    assert "flood-42-done" in fast.text
    assert received >= 12_000_000
    terminal = hub.terminals[(world.project, "main")]
    assert all(within_bound(c, term_settings) for c in terminal.clients)
    assert hub.slow_clients_closed >= 1
    assert terminal.scrollback_len <= term_settings.execution.terminal_scrollback_bytes
    msg = await slow.ws.receive(timeout=10)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await slow.ws.receive(timeout=10)
    assert slow.ws.close_code == 1013


async def test_flood_with_only_a_slow_client_pauses_the_pty(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    hub = hub_of(server)
    term = await open_term(server, world.project, world.owner)
    await term.read_until("$ ")
    await term.type("yes")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        terminal = hub.terminals[(world.project, "main")]
        if terminal.paused_count > 0:
            break
        await asyncio.sleep(0.05)
    assert terminal.paused_count > 0
    assert all(within_bound(c, term_settings) for c in terminal.clients)
    await term.send("stdin", "\x03")
    await term.type("echo stopped-$((2+3))")
    deadline = time.monotonic() + 30
    while "stopped-5" not in term.text[-200:] and time.monotonic() < deadline:
        msg = await term.ws.receive(timeout=10)
        frame = json.loads(msg.data)
        if frame[0] == "stdout":
            term.text = term.text[-1000:] + frame[1]
    assert "stopped-5" in term.text


async def test_shutdown_kills_every_shell(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    term = await open_term(server, world.project, world.owner)
    await term.read_until("$ ")
    await term.type("(trap '' TERM HUP; sleep 300) & echo bg-$((3*3))")
    await term.read_until("bg-9")
    hub = hub_of(server)
    uid = hub.local.sandbox.identity_for(hub.local.uids.slot(str(world.project))).uid
    await server.stop()
    msg = await term.ws.receive(timeout=10)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await term.ws.receive(timeout=10)
    assert not hub.terminals
    if uid is not None:
        deadline = time.monotonic() + 5
        while processes_of(uid) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert processes_of(uid) == []


async def test_a_command_sees_the_editors_latest_text(
    live_server: StartServer, term_settings: Settings, world: World, db: Database,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    server = await live_server(term_settings)
    async with db.service() as conn:
        file_id = await conn.fetchval(
            "select id from public.files where project_id = $1 and path = 'hello.txt'",
            world.project,
        )
    term = await open_term(server, world.project, world.member)
    await term.read_until("$ ")
    await term.type("cat hello.txt")
    await term.read_until("hello from the project\r\n")
    # An editor changes the file while the shell is open (the room stays loaded).
    documents = server.app.state.services.documents
    await documents.write_text(file_id, "edited live in the editor\n", world.owner)
    await term.type("cat hello.txt")
    await term.read_until("edited live in the editor\r\n")
    # A file the shell itself changed is not overwritten by an older editor text.
    await term.type("echo from-the-shell > hello.txt; echo done")
    await term.read_until("done\r\n")
    await term.type("cat hello.txt")
    await term.read_until("from-the-shell\r\n")


async def test_an_oversized_input_message_is_refused_out_loud(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]],
) -> None:
    """Between the 64 KiB input limit and the 8 MiB frame limit a message used to vanish:
    now the socket closes with 4413 and the limit; the shell and other clients go on."""
    server = await live_server(term_settings)
    other = await open_term(server, world.project, world.member)
    await other.read_until("$ ")
    paster = await open_term(server, world.project, world.owner)
    assert await first_frame(paster) == ["setup", {}]
    await paster.send("stdin", "echo " + "x" * (MAX_FRAME + 10) + "\r")
    while True:
        msg = await paster.ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert paster.ws.close_code == 4413
    assert f"at most {MAX_FRAME}" in str(msg.extra)
    await other.type("echo still-$((1+1))")
    await other.read_until("still-2")
    assert "xxxxxxxxxx" not in other.text  # nothing of the refused paste reached the shell
    again = await open_term(server, world.project, world.owner)
    await again.send("stdin", "echo " + "y" * 10_000 + "\r")
    await again.read_until("y" * 200)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x01\x02", "binary frame"),
        ("stdin ls", "not JSON"),
        ('{"stdin": "ls"}', "expected a JSON list"),
        ('["stdin"]', "malformed stdin"),
        ('["stdin", 42]', "malformed stdin"),
        ('["set_size", "24", 80]', "malformed set_size"),
        ('["set_size", 24, 0]', "malformed set_size"),
    ],
)
async def test_a_malformed_message_is_refused_out_loud(
    live_server: StartServer, term_settings: Settings, world: World,
    open_term: Callable[..., Awaitable[Term]], frame: str | bytes, reason: str,
) -> None:
    """A broken client used to have its messages dropped without a word (its keystrokes went
    nowhere): now its socket closes with 4400 and what was wrong; the shell goes on for the
    others, and an unknown kind is still ignored as terminado does."""
    server = await live_server(term_settings)
    other = await open_term(server, world.project, world.member)
    await other.read_until("$ ")
    await other.ws.send_str(json.dumps(["future_kind", 1]))  # ignored, not refused
    broken = await open_term(server, world.project, world.owner)
    assert await first_frame(broken) == ["setup", {}]
    if isinstance(frame, bytes):
        await broken.ws.send_bytes(frame)
    else:
        await broken.ws.send_str(frame)
    while True:
        msg = await broken.ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    assert broken.ws.close_code == 4400
    assert reason in str(msg.extra)
    await other.type("echo still-$((2+2))")
    await other.read_until("still-4")
