"""``projects.cleanup``: what a deleted project leaves outside the database, removed.

Queued by the database itself in the transaction that deletes the project (a trigger,
``sql/0160_project_cleanup_job.sql``), so every way of deleting one (the API, a workspace's
cascade, the service) is covered and the job exists exactly when the deletion committed.
The job gets the object keys the project's files held (read before the cascade) and:

- deletes each of those objects that no file row (deleted ones included) and no git base
  tree names any more: the same rule as ``storage.collect``, applied at once to this
  project's keys (an object another project holds stays);
- removes the project's workdir, its disk image and lock file (``ProjectVolumes.remove``;
  retried while a run or a terminal on this machine still holds the workdir) and its
  blobs under ``storage_root`` from before the object store.

Idempotent: a second run finds nothing and succeeds. The disk part is done on the machine
whose worker runs the job (server processes of one machine share the workdirs; with
several machines, the others' copies of a workdir are not removed by it).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import BaseModel

from execution.volumes import ProjectVolumes, remove_tree
from jobs.definition import Job, JobContext, job
from storage.jobs import REFERENCED
from storage.objects import ObjectStore, is_object_key

PROJECT_EXISTS = "select exists (select 1 from public.projects where id = $1)"


class ProjectCleanupInput(BaseModel):
    project_id: uuid.UUID
    object_keys: list[str] = []


@job("projects.cleanup", input=ProjectCleanupInput, job_type="cleanup", max_attempts=10,
     retry_base=5, retry_max=600, timeout=600)
async def cleanup_project(ctx: JobContext, payload: ProjectCleanupInput) -> dict[str, Any]:
    project_id = payload.project_id
    keys = sorted({k for k in payload.object_keys if is_object_key(k)})
    async with ctx.db.acquire() as conn:
        if await conn.fetchval(PROJECT_EXISTS, project_id):
            return {"skipped": "the project exists"}
        kept = {r["k"] for r in await conn.fetch(REFERENCED, keys)} if keys else set()
    objects = ctx.resource(ObjectStore)
    deleted = 0
    for key in keys:
        if key not in kept:
            await objects.delete(key)
            deleted += 1
    volumes = ctx.resource(ProjectVolumes)
    workdir = await volumes.remove(project_id)
    await asyncio.to_thread(remove_tree, volumes.config.storage_root / str(project_id))
    if deleted or workdir:
        ctx.log.info("project %s: %d objects deleted, %d kept, workdir %s", project_id,
                     deleted, len(kept), "removed" if workdir else "absent")
    return {"objects_deleted": deleted, "objects_kept": len(kept), "workdir_removed": workdir}


JOBS: list[Job[Any]] = [cleanup_project]
