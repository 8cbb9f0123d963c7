"""Putting a job on the queue, inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import asyncpg

from jobs import queries
from jobs.definition import I, Job
from jobs.timing import wake_payload


class EnqueueError(RuntimeError):
    """The dedupe key's unfinished job vanished three times in a row (should not happen)."""


async def enqueue(
    conn: asyncpg.Connection,
    job: Job[I],
    payload: I,
    *,
    priority: int | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
) -> uuid.UUID:
    """Queue ``job`` with ``payload`` on ``conn``; return the job's id.

    Call it inside the transaction whose change asks for the job: the row and its NOTIFY
    commit or roll back with that change. With ``dedupe_key``, while a job with that key is
    unfinished (pending, retrying or running) no second one is queued and its id is returned.
    ``run_at`` (timezone-aware) delays the first run; ``priority`` (higher first) and
    ``max_attempts`` default to the job's own.
    """
    if not isinstance(payload, job.input):
        raise TypeError(f"{job.name} takes {job.input.__name__}, not {type(payload).__name__}")
    if run_at is not None and run_at.tzinfo is None:
        raise ValueError("run_at must be timezone-aware")
    wake = wake_payload(job.name, run_at.timestamp() if run_at is not None else None)
    args = (
        job.name, job.job_type, payload.model_dump_json(),
        job.priority if priority is None else priority,
        job.max_attempts if max_attempts is None else max_attempts,
        run_at, dedupe_key, wake,
    )
    for _ in range(3):
        row = await conn.fetchrow(queries.ENQUEUE, *args)
        if row is not None:
            return cast(uuid.UUID, row["id"])
        # The key's job exists; it may finish between the two statements, then insert again.
        existing = await conn.fetchval(queries.UNFINISHED_BY_DEDUPE_KEY, dedupe_key)
        if existing is not None:
            return cast(uuid.UUID, existing)
    raise EnqueueError(f"could not enqueue {job.name} with dedupe key {dedupe_key!r}")
