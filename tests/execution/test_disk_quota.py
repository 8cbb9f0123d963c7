"""A project's disk quota holds while a run or a terminal writes past it: the host folder,
storage and ``files`` stay under it, and the user is told. Both enforcements: a loop image
per project (``auto`` as root) and the watcher (``watch``, what non-root hosts get)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from execution import disk
from execution.config import ExecutionConfig
from execution.runner import ExecutionHub
from execution.volumes import ProjectVolumes
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.execution.procs import processes_of
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
QUOTA = 8 * 1024 * 1024
# Files of 1 MB (RLIMIT_FSIZE is 1 MiB in these tests) until something stops the writer.
FILL_RUN = """
import os, time
os.makedirs("out", exist_ok=True)
for i in range(400):
    with open(f"out/f{i:03}.bin", "wb") as f:
        f.write(os.urandom(1_000_000))
    time.sleep(0.01)
print("wrote everything")
"""
FILL_SHELL = ("for i in $(seq 1 40); do head -c 1000000 /dev/urandom > t$i.bin || break; done;"
              " echo fill-done")


@dataclass
class World:
    owner: uuid.UUID
    project: uuid.UUID


@pytest.fixture
async def world(db: Database) -> World:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
        project = await factories.create_project(conn, workspace)
        await factories.create_file(conn, project, "main.py", FILL_RUN)
    return World(owner, project)


@pytest.fixture(params=["auto", "watch"])
def quota_settings(request: pytest.FixtureRequest, settings: Settings,
                   exec_config: ExecutionConfig) -> Settings:
    config = dataclasses.replace(
        exec_config, project_disk_quota_bytes=QUOTA, disk_enforcement=request.param,
        disk_volume_idle_s=0.2, terminal_idle_timeout_s=0.3,
    )
    return dataclasses.replace(settings, execution=config)


def token(user: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")


async def stored_bytes(db: Database, project: uuid.UUID) -> int:
    async with db.service() as conn:
        total: int = await conn.fetchval(
            "select coalesce(sum(coalesce(size_bytes, octet_length(content))), 0)"
            " from public.files where project_id = $1 and not is_deleted", project,
        )
    return total


def folder_bytes(path: Path) -> int:
    return sum(entry.stat().st_blocks * 512 for entry in path.rglob("*") if entry.is_file())


def assert_under_quota(settings: Settings, project: uuid.UUID, stored: int) -> None:
    config = settings.execution
    workdir = config.workdir_root / str(project)
    images = list((config.workdir_root / ".volumes").glob(f"{project}.img"))
    host = disk.usage(workdir) if workdir.exists() else 0
    # A loop image holds the folder's blocks (and the filesystem's own): count it whole.
    host = max([host, *(image.stat().st_blocks * 512 for image in images)])
    storage = folder_bytes(config.storage_root / str(project))
    assert host <= QUOTA, f"host folder {host} > {QUOTA}"
    assert storage <= QUOTA, f"storage {storage} > {QUOTA}"
    assert stored <= QUOTA, f"files rows {stored} > {QUOTA}"


async def test_a_run_cannot_write_past_the_quota(
    live_server: StartServer, quota_settings: Settings, world: World, db: Database
) -> None:
    server = await live_server(quota_settings)
    headers = {"Authorization": f"Bearer {token(world.owner)}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/v1/projects/{world.project}/executions",
            json={"language": "python", "source_code": FILL_RUN, "wall_time_limit": 8},
            headers=headers,
        ) as resp:
            assert resp.status == 202, await resp.text()
            run = await resp.json()
        hub = server.app.state.services.executions
        assert isinstance(hub, ExecutionHub)
        await hub.wait(uuid.UUID(run["id"]), 30)
        async with session.get(f"{server.url}/api/v1/executions/{run['id']}",
                               headers=headers) as resp:
            final = await resp.json()
        async with session.get(f"{server.url}/healthz") as resp:
            health = await resp.json()
    assert final["status"] == "runtime_error_sigxfsz", (final["message"], final["stderr"])
    assert final["message"].startswith("project disk quota of 8 MiB reached"), final
    assert "wrote everything" not in final["stdout"]
    expected = "loop" if quota_settings.execution.disk_enforcement == "auto" else "watch"
    if os.geteuid() == 0:
        assert health["executions"]["disk_enforcement"] == expected, health
    assert_under_quota(quota_settings, world.project, await stored_bytes(db, world.project))
    async with db.service() as conn:
        saved = await conn.fetchval(
            "select count(*) from public.files where project_id = $1 and path like 'out/%'",
            world.project,
        )
    assert saved >= 1  # what fits is kept


@pytest.fixture
async def terminal_socket(
    live_server: StartServer, quota_settings: Settings, world: World
) -> AsyncIterator[tuple[LiveServer, aiohttp.ClientWebSocketResponse]]:
    server = await live_server(quota_settings)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{server.ws_url}/ws/projects/{world.project}/terminals/main?token="
            f"{token(world.owner)}", headers={"Origin": TEST_ORIGIN},
        )
        yield server, ws
        await ws.close()


async def read_until(ws: aiohttp.ClientWebSocketResponse, needle: str, timeout: float = 20,
                     seen: list[str] | None = None) -> str:
    text = "".join(seen or [])
    deadline = time.monotonic() + timeout
    while needle not in text:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg, text[-300:])
        frame = json.loads(msg.data)
        if frame[0] == "stdout":
            text += frame[1]
    return text


async def test_a_terminal_cannot_write_past_the_quota_and_stops_when_left(
    terminal_socket: tuple[LiveServer, aiohttp.ClientWebSocketResponse],
    quota_settings: Settings, world: World, db: Database,
) -> None:
    server, ws = terminal_socket
    await read_until(ws, "$ ")
    await ws.send_str(json.dumps(["stdin", FILL_SHELL + "\r"]))
    text = await read_until(ws, "project disk quota of 8 MiB reached")
    assert "fill-done" in text or "[icreate]" in text
    # A writer left running in the background while the client goes away.
    await ws.send_str(json.dumps(["stdin", "(while true; do date >> grow.txt; done) &\r"]))
    await asyncio.sleep(0.3)
    hub = server.app.state.services.terminals
    terminal = next(iter(hub.terminals.values()))
    uid = terminal.uid
    await ws.close()
    deadline = time.monotonic() + 15
    while hub.terminals and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert not hub.terminals  # closed after the idle timeout
    if uid is not None:
        while processes_of(uid) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert processes_of(uid) == []
    assert_under_quota(quota_settings, world.project, await stored_bytes(db, world.project))
    workdir = quota_settings.execution.workdir_root / str(world.project)
    while os.path.ismount(workdir) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert not os.path.ismount(workdir)  # released once nobody uses it


async def test_a_workdir_that_cannot_be_mounted_is_watched_instead(
    exec_config: ExecutionConfig,
) -> None:
    """As root the image is made and mounted; when that fails (here a directory squats the
    image's path) the workdir is watched for this use, not left unlimited."""
    volumes = ProjectVolumes(dataclasses.replace(exec_config, project_disk_quota_bytes=QUOTA))
    project = uuid.uuid4()
    squatter = exec_config.workdir_root / ".volumes" / f"{project}.img"
    squatter.mkdir(parents=True)
    (squatter / "keep").write_text("x")
    try:
        async with volumes.use(project, QUOTA, None) as volume:
            assert volume.mode == "watch"
            volume.path.mkdir(parents=True, exist_ok=True)
            await asyncio.sleep(0.3)  # the watcher's first measurement

            def fill() -> None:
                for i in range(12):
                    (volume.path / f"f{i}").write_bytes(os.urandom(1_000_000))

            await asyncio.to_thread(fill)
            await asyncio.wait_for(volume.over_quota.wait(), 5)
    finally:
        await volumes.close()
