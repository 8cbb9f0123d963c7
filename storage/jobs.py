"""``storage.collect``: objects no file refers to any more are deleted, once a day.

An object is kept while a file row (deleted ones included: they can be restored) or a
repository's base tree names it. Only objects older than ``grace_s`` are candidates: an
upload stores its object before its row commits, and ``tmp/`` leftovers of cut-off
uploads are that old only when abandoned. Idempotent: a second run finds nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from jobs.definition import Job, JobContext, job
from storage.objects import ObjectStore

REFERENCED = """
select k from unnest($1::text[]) as k
where exists (select 1 from public.files f where f.storage_path = k)
   or exists (select 1 from public.git_repository_files g where g.storage_key = k)
"""
BATCH = 1000


class CollectInput(BaseModel):
    grace_s: float = 24 * 3600


@job("storage.collect", input=CollectInput, job_type="cleanup", every=timedelta(days=1),
     timeout=3600)
async def collect(ctx: JobContext, payload: CollectInput) -> dict[str, Any]:
    objects = ctx.resource(ObjectStore)
    stale = await objects.stale_keys(timedelta(seconds=payload.grace_s))
    deleted = 0
    for start in range(0, len(stale), BATCH):
        batch = stale[start:start + BATCH]
        async with ctx.db.acquire() as conn:
            kept = {r["k"] for r in await conn.fetch(REFERENCED, batch)}
        for key in batch:
            if key not in kept:
                await objects.delete(key)
                deleted += 1
    if deleted:
        ctx.log.info("deleted %d unreferenced objects", deleted)
    return {"candidates": len(stale), "deleted": deleted}


JOBS: list[Job[Any]] = [collect]
