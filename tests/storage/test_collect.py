"""``storage.collect`` deletes objects no file or base tree names, and nothing younger."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from jobs import Worker, WorkerConfig, enqueue
from persistence.db import Database
from storage.config import StorageConfig
from storage.jobs import CollectInput, collect
from storage.objects import ObjectStore
from tests.support import factories


async def test_unreferenced_objects_are_collected(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    objects = ObjectStore.from_config(StorageConfig(directory=tmp_path / "objects"))
    used = await objects.put_bytes(b"in a file")
    deleted_file = await objects.put_bytes(b"in a soft-deleted file")
    orphan = await objects.put_bytes(b"nobody's")
    async with db.service() as conn:
        user = await factories.create_user(conn)
        project = await factories.create_project(conn, await factories.create_workspace(conn, user))
        for path, key, gone in (("a.bin", used.key, False), ("b.bin", deleted_file.key, True)):
            await conn.execute(
                "insert into public.files (project_id, path, name, type, storage_path,"
                " size_bytes, is_deleted) values ($1, $2, $2, 'file', $3, 1, $4)",
                project, path, key, gone)
    worker = Worker(db, [collect], dsn=database_url, config=WorkerConfig(lease_s=5),
                    resources=[objects])
    await worker.start()
    try:
        async with db.service() as conn:
            young = await enqueue(conn, collect, CollectInput(grace_s=3600))
            old = await enqueue(conn, collect, CollectInput(grace_s=-60))
        deadline = time.monotonic() + 30
        while True:
            async with db.acquire() as conn:
                rows = await conn.fetch(
                    "select id, output from public.background_jobs where id = any($1)"
                    " and status = 'completed'", [young, old])
            if len(rows) == 2:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    outputs = {r["id"]: r["output"] for r in rows}
    assert outputs[young] == {"candidates": 0, "deleted": 0}  # all younger than the grace
    assert outputs[old]["deleted"] == 1
    assert await objects.size(orphan.key) is None
    assert await objects.read(used.key) == b"in a file"
    assert await objects.read(deleted_file.key) == b"in a soft-deleted file"
