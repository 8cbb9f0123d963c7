"""``projects.cleanup``: a deleted project's workdir, disk image and objects are removed,
once, by a job the deletion itself queued; objects other projects hold stay."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

from execution.cleanup import ProjectCleanupInput, cleanup_project
from execution.config import ExecutionConfig
from execution.volumes import LOOP, ProjectVolumes, VolumeBusy
from jobs import Worker, WorkerConfig, enqueue
from persistence.db import Database
from storage.config import StorageConfig
from storage.objects import ObjectStore
from tests.support import factories

QUOTA = 4 * 1024 * 1024


async def insert_stored_file(db: Database, project: uuid.UUID, path: str, key: str) -> None:
    async with db.service() as conn:
        await conn.execute(
            "insert into public.files (project_id, path, name, type, storage_path, size_bytes)"
            " values ($1, $2, $2, 'file', $3, 1)", project, path, key)


async def wait_completed(db: Database, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, object]:
    deadline = time.monotonic() + 30
    while True:
        async with db.acquire() as conn:
            rows = await conn.fetch(
                "select id, status, output, error from public.background_jobs"
                " where id = any($1)", job_ids)
        if all(r["status"] == "completed" for r in rows) and len(rows) == len(job_ids):
            return {r["id"]: r["output"] for r in rows}
        failed = [r["error"] for r in rows if r["status"] == "failed"]
        assert not failed, failed
        assert time.monotonic() < deadline, [dict(r) for r in rows]
        await asyncio.sleep(0.05)


async def test_deleting_a_project_removes_its_disk_and_objects_once(
    db: Database, database_url: str, tmp_path: Path, exec_config: ExecutionConfig
) -> None:
    config = dataclasses.replace(exec_config, project_disk_quota_bytes=QUOTA,
                                 disk_volume_idle_s=30)
    volumes = ProjectVolumes(config)
    objects = ObjectStore.from_config(StorageConfig(directory=tmp_path / "objects"))
    only_here = await objects.put_bytes(b"only in the deleted project")
    shared = await objects.put_bytes(b"also in another project")
    async with db.service() as conn:
        user = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, user)
        doomed = await factories.create_project(conn, workspace)
        other = await factories.create_project(conn, workspace)
    await insert_stored_file(db, doomed, "a.bin", only_here.key)
    await insert_stored_file(db, doomed, "b.bin", shared.key)
    await insert_stored_file(db, other, "c.bin", shared.key)
    workdir = config.workdir_root / str(doomed)
    image = volumes.images / f"{doomed}.img"
    legacy = config.storage_root / str(doomed)
    legacy.mkdir(parents=True)
    (legacy / "blob").write_bytes(b"before the object store")
    async with volumes.use(doomed, QUOTA, None) as volume:
        (workdir / "left.txt").write_text("in the workdir\n")
        mode = volume.mode
        # Still in use: the disk part waits (the job retries), nothing is pulled away.
        try:
            await volumes.remove(doomed)
            raise AssertionError("a workdir in use was removed")
        except VolumeBusy:
            pass
    assert workdir.exists() and (image.exists() or mode != LOOP)

    async with db.service() as conn:
        await conn.execute("delete from public.projects where id = $1", doomed)
        queued = await conn.fetchrow(
            "select id, job_type, max_attempts, input from public.background_jobs"
            " where job_name = 'projects.cleanup'")
    assert queued["job_type"] == cleanup_project.job_type
    assert queued["max_attempts"] == cleanup_project.max_attempts
    assert sorted(queued["input"]["object_keys"]) == sorted([only_here.key, shared.key])

    worker = Worker(db, [cleanup_project], dsn=database_url, config=WorkerConfig(lease_s=5),
                    resources=[objects, volumes])
    await worker.start()
    try:
        first = await wait_completed(db, [queued["id"]])
        async with db.service() as conn:
            again = await enqueue(conn, cleanup_project, ProjectCleanupInput(
                project_id=doomed, object_keys=[only_here.key, shared.key]))
        second = await wait_completed(db, [again])
    finally:
        await worker.stop()
        await volumes.close()
    assert first[queued["id"]] == {"objects_deleted": 1, "objects_kept": 1,
                                   "workdir_removed": True}
    assert second[again] == {"objects_deleted": 1, "objects_kept": 1, "workdir_removed": False}
    assert await objects.size(only_here.key) is None
    assert await objects.read(shared.key) == b"also in another project"
    assert not workdir.exists() and not image.exists() and not legacy.exists()
    assert not (volumes.images / f"{doomed}.lock").exists()
    assert not workdir.is_mount()


async def test_every_way_of_deleting_queues_a_cleanup_per_project(db: Database) -> None:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, user)
        by_user = await factories.create_project(conn, workspace)
        cascaded = {await factories.create_project(conn, workspace) for _ in range(2)}
    async with db.as_user(str(user)) as conn:  # the API's way: the owner, under RLS
        assert await conn.fetchval(
            "delete from public.projects where id = $1 returning id", by_user) == by_user
    async with db.service() as conn:
        await conn.execute("delete from public.workspaces where id = $1", workspace)
        rows = await conn.fetch(
            "select input from public.background_jobs where job_name = 'projects.cleanup'")
    assert sorted(uuid.UUID(r["input"]["project_id"]) for r in rows) == sorted(
        {by_user, *cascaded})


async def test_a_rolled_back_deletion_queues_nothing(db: Database) -> None:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        project = await factories.create_project(conn, await factories.create_workspace(conn, user))
    async with db.service() as conn:
        try:
            async with conn.transaction():
                await conn.execute("delete from public.projects where id = $1", project)
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
        count = await conn.fetchval(
            "select count(*) from public.background_jobs where job_name = 'projects.cleanup'")
    assert count == 0
