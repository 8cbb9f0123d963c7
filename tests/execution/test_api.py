"""The execution REST flow end to end through a live server: 202, SSE output, the stored
record, files brought back (not through planted symlinks), usage, permissions."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from execution.config import ExecutionConfig
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.conftest import TEST_JWT_SECRET, TEST_ORIGIN
from tests.execution.procs import processes_of
from tests.fakes.judge0_server import FakeJudge0
from tests.support import factories
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]

MAIN = """
import os
data = open("data/input.txt").read()
print("read:", data.strip())
os.makedirs("out", exist_ok=True)
open("out/result.txt", "w").write(data.upper())
open("data/input.txt", "w").write("changed by the run\\n")
open("blob.bin", "wb").write(bytes(range(256)))
os.symlink("/etc/shadow", "leak")
os.symlink("/etc", "etcdir")
os.mkfifo("pipe")
print("done")
"""


@dataclass
class World:
    owner: uuid.UUID
    viewer: uuid.UUID
    stranger: uuid.UUID
    project: uuid.UUID
    main: uuid.UUID
    data: uuid.UUID


@pytest.fixture
async def world(db: Database) -> World:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        viewer = await factories.create_user(conn)
        stranger = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
        main = await factories.create_file(conn, project, "main.py", MAIN)
        data = await factories.create_file(conn, project, "data/input.txt", "hello run\n")
    return World(owner, viewer, stranger, project, main, data)


@pytest.fixture
def exec_settings(settings: Settings, exec_config: ExecutionConfig) -> Settings:
    return dataclasses.replace(settings, execution=exec_config)


def auth(user: uuid.UUID) -> dict[str, str]:
    token = issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")
    return {"Authorization": f"Bearer {token}"}


async def sse_events(
    session: aiohttp.ClientSession, url: str, user: uuid.UUID
) -> list[dict[str, object]]:
    events = []
    async with session.get(url, headers=auth(user), timeout=aiohttp.ClientTimeout(30)) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


async def test_run_a_project_file_end_to_end(
    live_server: StartServer, exec_settings: Settings, world: World, db: Database
) -> None:
    server = await live_server(exec_settings)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/v1/projects/{world.project}/executions",
            json={"file_id": str(world.main)}, headers=auth(world.owner),
        ) as resp:
            assert resp.status == 202, await resp.text()
            created = await resp.json()
        assert created["status"] == "in_queue" and created["language"] == "python"
        assert resp.headers["Location"] == f"/api/v1/executions/{created['id']}"

        events = await sse_events(
            session, f"{server.url}/api/v1/executions/{created['id']}/events", world.owner
        )
        kinds = [e["type"] for e in events]
        assert kinds[0] == "execution.started" and kinds[-1] == "execution.finished"
        streamed = "".join(str(e["data"]) for e in events if e["type"] == "execution.output")
        assert streamed == "read: hello run\ndone\n"

        async with session.get(
            f"{server.url}/api/v1/executions/{created['id']}", headers=auth(world.viewer)
        ) as resp:
            assert resp.status == 200
            final = await resp.json()
        assert final["status"] == "accepted" and final["status_id"] == 3, final
        assert final["stdout"] == "read: hello run\ndone\n"
        assert final["exit_code"] == 0 and final["finished"] is True
        assert final["memory_kb"] > 0 and final["execution_time_ms"] > 0

        async with session.get(
            f"{server.url}/api/v1/executions/{created['id']}", headers=auth(world.stranger)
        ) as resp:
            assert resp.status == 404

    async with db.service() as conn:
        rows = {
            r["path"]: r for r in await conn.fetch(
                "select path, type, content, storage_path, size_bytes from public.files "
                "where project_id = $1 and not is_deleted", world.project,
            )
        }
        usage = await conn.fetch(
            "select resource_type, amount, metadata from public.usage_records where user_id = $1",
            world.owner,
        )
    assert rows["out/result.txt"]["content"] == "HELLO RUN\n"
    assert rows["out"]["type"] == "folder"
    assert rows["data/input.txt"]["content"] == "changed by the run\n"
    blob = rows["blob.bin"]
    assert blob["content"] is None and blob["size_bytes"] == 256
    # Content-addressed in the object store, like uploads and git imports.
    digest = hashlib.sha256(bytes(range(256))).hexdigest()
    assert blob["storage_path"] == f"sha256/{digest[:2]}/{digest}"
    stored = exec_settings.storage.directory / blob["storage_path"]
    assert stored.read_bytes() == bytes(range(256))
    for planted in ("leak", "etcdir", "pipe"):
        assert planted not in rows
    assert not any(path.startswith("etcdir/") for path in rows)
    assert [(u["resource_type"], int(u["amount"])) for u in usage] == [("executions", 1)]
    assert usage[0]["metadata"]["execution_id"] == created["id"]


BAD_NAMES = r"""
import os
for name in ["ok.txt", "invoice_\u202efdp.exe", "tab\tname.txt", " padded.txt", ".GIT",
             "zero\u200bwidth.txt"]:
    open(name, "w").write("x\n")
os.makedirs("git~1", exist_ok=True)
open("git~1/config", "w").write("x\n")
open(b"latin1-\xe9.txt", "w").write("x\n")
print("planted")
"""


async def test_files_brought_back_obey_the_api_name_rules(
    live_server: StartServer, exec_settings: Settings, world: World, db: Database
) -> None:
    server = await live_server(exec_settings)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/v1/projects/{world.project}/executions",
            json={"language": "python", "source_code": BAD_NAMES}, headers=auth(world.owner),
        ) as resp:
            assert resp.status == 202, await resp.text()
            created = await resp.json()
        await sse_events(
            session, f"{server.url}/api/v1/executions/{created['id']}/events", world.owner
        )
        async with session.get(
            f"{server.url}/api/v1/executions/{created['id']}", headers=auth(world.owner)
        ) as resp:
            final = await resp.json()
    async with db.service() as conn:
        paths = {r["path"] for r in await conn.fetch(
            "select path from public.files where project_id = $1", world.project
        )}
    assert final["status"] == "accepted" and final["stdout"] == "planted\n", final
    assert "ok.txt" in paths
    assert paths <= {"ok.txt", "main.py", "data", "data/input.txt"}, paths
    message = final["message"]
    assert message.startswith("7 new files not saved, name not allowed: "), message
    assert "U+202E" in message and "\\u202e" in message and "\u202e" not in message
    assert "(and 2 more)" in message


async def test_source_code_runs_and_errors_are_reported(
    live_server: StartServer, exec_settings: Settings, world: World
) -> None:
    server = await live_server(exec_settings)
    base = f"{server.url}/api/v1/projects/{world.project}/executions"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/v1/languages", headers=auth(world.viewer)) as r:
            assert r.status == 200
            langs = await r.json()
        assert langs["backend"] == "sandbox"
        assert {"python", "javascript", "c", "cpp", "bash"} <= {x["id"] for x in langs["languages"]}

        async with session.post(
            base, json={"language": "c", "source_code": "int main(){ return }"},
            headers=auth(world.owner),
        ) as resp:
            assert resp.status == 202
            compile_error = await resp.json()
        async with session.post(
            base, json={"language": "python", "source_code": "while True: pass",
                        "cpu_time_limit": 1, "wall_time_limit": 2},
            headers=auth(world.owner),
        ) as resp:
            assert resp.status == 202
            loop = await resp.json()
        for run in (compile_error, loop):
            await sse_events(session, f"{server.url}/api/v1/executions/{run['id']}/events",
                             world.owner)
        results = []
        for run in (compile_error, loop):
            async with session.get(f"{server.url}/api/v1/executions/{run['id']}",
                                   headers=auth(world.owner)) as resp:
                results.append(await resp.json())
        assert results[0]["status"] == "compilation_error" and "error" in results[0][
            "compile_output"]
        assert results[1]["status"] == "time_limit_exceeded"

        async with session.post(
            base, json={"language": "python", "source_code": "print(1)"},
            headers=auth(world.viewer),
        ) as resp:
            assert resp.status == 403
        async with session.post(
            base, json={"language": "cobol", "source_code": "x"}, headers=auth(world.owner)
        ) as resp:
            assert resp.status == 422
            assert (await resp.json())["error"]["code"] == "unknown_language"
        async with session.post(
            base, json={"language": "python"}, headers=auth(world.owner)
        ) as resp:
            assert resp.status == 422
        async with session.get(f"{server.url}/healthz") as resp:
            health = await resp.json()
        assert health["executions"]["limit_mechanism"] == "rlimit"
        assert health["executions"]["available"] is True



async def test_output_reaches_the_project_channel(
    live_server: StartServer, exec_settings: Settings, world: World
) -> None:
    server = await live_server(exec_settings)
    token = auth(world.viewer)["Authorization"].split()[1]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{server.ws_url}/ws/projects/{world.project}?token={token}",
            headers={"Origin": TEST_ORIGIN},
        )
        async with session.post(
            f"{server.url}/api/v1/projects/{world.project}/executions",
            json={"language": "bash", "source_code": "echo one; echo two >&2"},
            headers=auth(world.owner),
        ) as resp:
            assert resp.status == 202
            run = await resp.json()
        seen: list[dict[str, object]] = []
        while not seen or seen[-1]["type"] != "execution.finished":
            msg = await ws.receive(timeout=20)
            assert msg.type == aiohttp.WSMsgType.TEXT
            event = json.loads(msg.data)
            if str(event.get("type", "")).startswith("execution."):
                assert event["execution_id"] == run["id"]
                seen.append(event)
        await ws.close()
    assert seen[0]["type"] == "execution.started"
    outputs = {(e["stream"], e["data"]) for e in seen if e["type"] == "execution.output"}
    assert outputs == {("stdout", "one\n"), ("stderr", "two\n")}
    final = seen[-1]["execution"]
    assert isinstance(final, dict) and final["status"] == "accepted"


async def test_shutdown_kills_running_code_and_marks_the_run(
    live_server: StartServer, exec_settings: Settings, world: World, db: Database
) -> None:
    server = await live_server(exec_settings)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/v1/projects/{world.project}/executions",
            json={"language": "bash", "source_code": "echo started; trap '' TERM; sleep 60",
                  "wall_time_limit": 30},
            headers=auth(world.owner),
        ) as resp:
            run = await resp.json()
        url = f"{server.url}/api/v1/executions/{run['id']}/events"
        async with session.get(url, headers=auth(world.owner)) as resp:
            async for raw in resp.content:
                if b"started" in raw and b"execution.output" in raw:
                    break
    hub = server.app.state.services.executions
    uid = hub.backend.sandbox.identity_for(hub.backend.uids.slot(str(world.project))).uid
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 10
    async with db.service() as conn:
        row = await conn.fetchrow(
            "select status, message, finished_at from public.code_executions where id = $1",
            uuid.UUID(run["id"]),
        )
    assert row["status"] == "internal_error" and "interrupted" in row["message"]
    if uid is not None:
        deadline = time.monotonic() + 5
        while processes_of(uid) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert processes_of(uid) == []


async def test_judge0_backend_through_the_api(
    live_server: StartServer, settings: Settings, world: World
) -> None:
    fake = FakeJudge0()
    await fake.start()
    try:
        config = ExecutionConfig(backend="judge0", judge0_url=fake.url, judge0_poll_deadline_s=10)
        server = await live_server(dataclasses.replace(settings, execution=config))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/api/v1/languages",
                                   headers=auth(world.owner)) as resp:
                langs = await resp.json()
            assert langs["backend"] == "judge0"
            async with session.post(
                f"{server.url}/api/v1/projects/{world.project}/executions",
                json={"file_id": str(world.main), "stdin": "x\ny"}, headers=auth(world.owner),
            ) as resp:
                assert resp.status == 202, await resp.text()
                run = await resp.json()
            await sse_events(session, f"{server.url}/api/v1/executions/{run['id']}/events",
                             world.owner)
            async with session.get(f"{server.url}/api/v1/executions/{run['id']}",
                                   headers=auth(world.owner)) as resp:
                final = await resp.json()
        assert final["status"] == "accepted" and final["backend"] == "judge0"
        assert final["stdout"].startswith("y\nx\n") and final["token"] in fake.submissions
        assert fake.submissions[final["token"]].source == MAIN
    finally:
        await fake.stop()
