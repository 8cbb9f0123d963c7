"""A 5,000-file repository: imported in one job (bulk inserts, one ``cat-file --batch``),
then one edit pushed. Durations are printed (and measured properly in bench/git_sync.py),
never asserted."""

from __future__ import annotations

import asyncio
import time
import uuid

from persistence.db import Database
from tests.fakes.git_http import GitHost
from tests.gitsync.helpers import Stage


def many_files(count: int, binaries: int = 10) -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = {}
    for i in range(count - binaries):
        files[f"pkg{i % 50:02d}/mod{i:05d}.py"] = (
            f'"""Module {i}."""\n\n\ndef f{i}(x):\n    return x * {i}\n'
        )
    for i in range(binaries):
        files[f"assets/blob{i}.bin"] = bytes([i]) * 4096 + b"\x00"
    return files


async def test_a_5000_file_repository(stage: Stage, git_host: GitHost, db: Database) -> None:
    files = many_files(5000)
    # In a thread: seconds of git on the test side must not stall the servers in this loop.
    await asyncio.to_thread(git_host.create, "acme/big", files, token="tok")
    started = time.perf_counter()
    connected = await stage.connect(git_host.url("acme/big"), token="tok")
    job = await stage.job(connected["job_id"], timeout=300)
    imported = time.perf_counter() - started
    assert job["status"] == "completed", job
    assert job["output"]["created"] == 5000
    project = uuid.UUID(stage.project_id)
    async with db.acquire() as conn:
        counts = dict(await conn.fetch(
            "select type, count(*) from public.files where project_id = $1 and not is_deleted"
            " group by type", project))
        stored = await conn.fetchval(
            "select count(*) from public.files where project_id = $1 and storage_path is not null",
            project)
        base = await conn.fetchval("select count(*) from public.git_repository_files")
        edited = await conn.fetchval(
            "select id from public.files where project_id = $1 and path = 'pkg07/mod00007.py'",
            project)
    assert counts == {"file": 5000, "folder": 51} and stored == 10 and base == 5000
    await stage.api.ok("PUT", f"/files/{edited}/content", {"content": "edited = True\n"},
                       token=stage.owner.token)
    started = time.perf_counter()
    job = await stage.push("One edit in 5,000 files")
    pushed = time.perf_counter() - started
    assert job["status"] == "completed", job
    assert git_host.show("acme/big", "main", "pkg07/mod00007.py") == b"edited = True\n"
    assert len(git_host.files("acme/big")) == 5000
    print(f"\n5,000 files: connect+import {imported:.2f}s, push of one edit {pushed:.2f}s")
