"""The git jobs (``git.import``, ``git.pull``, ``git.push``) and how one is run.

Every run: take the repository's advisory lock (one sync at a time across processes),
mark it ``syncing`` and say so on the project channel, do the work, then record success
(``idle``, ``last_sync_at``) or failure (``error``, ``last_error``) and publish it. A
failure worth retrying (network, a push race) is re-raised for the queue's backoff; a
conflict, refused credentials or an unsafe repository fail at once
(``PermanentJobError``). All three are idempotent: a run after a crash finds the project
and the base tree as the last one left them and does only what remains.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

import jobs
from gitsync.repo import Author, check_branch
from gitsync.sync import GitRuntime, Sync, SyncError
from persistence import git as store


class RepositoryJob(BaseModel):
    repository_id: uuid.UUID
    user_id: uuid.UUID | None = None  # who asked (None: a webhook)


class PushJob(RepositoryJob):
    message: str = Field(min_length=1, max_length=10_000)
    branch: str | None = None  # None: the default branch


async def run(ctx: jobs.JobContext, operation: str, payload: RepositoryJob) -> dict[str, Any]:
    rt = ctx.resource(GitRuntime)
    async with rt.db.acquire() as lock_conn:
        await store.lock(lock_conn, payload.repository_id)
        try:
            return await _locked(rt, operation, payload)
        finally:
            await store.unlock(lock_conn, payload.repository_id)


async def _locked(rt: GitRuntime, operation: str, payload: RepositoryJob) -> dict[str, Any]:
    async with rt.db.service() as conn:
        row = await store.get(conn, payload.repository_id)
        if row is None:
            return {"skipped": "the repository was disconnected"}
        await store.set_syncing(conn, payload.repository_id)
    sync = Sync(rt, row, payload.user_id, operation)
    await rt.publish(sync.project_id, {
        "type": "git.sync_started", "repository_id": str(sync.repository_id),
        "operation": operation,
    })
    try:
        await _operation(rt, sync, payload)
    except SyncError as exc:
        await _failed(rt, sync, exc)
        if exc.retry:
            raise
        raise jobs.PermanentJobError(exc.message) from exc
    except Exception as exc:
        await _failed(rt, sync, SyncError("internal_error", str(exc) or type(exc).__name__))
        raise
    result = sync.outcome.as_json()
    await rt.publish(sync.project_id, {
        "type": "git.sync_finished", "repository_id": str(sync.repository_id),
        "operation": operation, "result": result,
    })
    return result


async def _operation(rt: GitRuntime, sync: Sync, payload: RepositoryJob) -> None:
    credentials = await rt.credentials(sync.row, payload.user_id)
    if isinstance(payload, PushJob):
        if sync.user_id is None:
            raise SyncError("no_author", "a push needs the user who asked for it")
        async with rt.db.acquire() as conn:
            who = await store.author(conn, sync.user_id)
        if who is None:
            raise SyncError("no_author", "the user who asked for the push is gone")
        branch = payload.branch or sync.row["default_branch"]
        try:
            check_branch(branch)
        except ValueError as exc:
            raise SyncError("invalid_branch", str(exc)) from exc
        await sync.push(credentials, branch, payload.message, Author(*who))
        return
    head = await sync.fetch(credentials)
    if head is not None and head == sync.row["base_commit"]:
        sync.outcome.up_to_date = True
        sync.outcome.commit = head
        async with rt.db.service() as conn:
            await store.set_synced(conn, sync.repository_id, head)
        return
    await sync.pull(credentials, head)


async def _failed(rt: GitRuntime, sync: Sync, error: SyncError) -> None:
    body = error.as_json()
    async with rt.db.service() as conn:
        await store.set_failed(conn, sync.repository_id, body)
    await rt.publish(sync.project_id, {
        "type": "git.sync_failed", "repository_id": str(sync.repository_id),
        "operation": sync.operation, "error": body, "will_retry": error.retry,
    })


@jobs.job("git.import", input=RepositoryJob, job_type="sync", max_attempts=3,
          concurrency=2, timeout=1800, retry_base=2, retry_max=120)
async def import_repository(ctx: jobs.JobContext, payload: RepositoryJob) -> dict[str, Any]:
    """Clone the default branch into the project (a pull from an empty base)."""
    return await run(ctx, "import", payload)


@jobs.job("git.pull", input=RepositoryJob, job_type="sync", max_attempts=5,
          concurrency=4, timeout=900, retry_base=2, retry_max=300)
async def pull(ctx: jobs.JobContext, payload: RepositoryJob) -> dict[str, Any]:
    """Fetch and merge the remote's default branch into the live documents."""
    return await run(ctx, "pull", payload)


@jobs.job("git.push", input=PushJob, job_type="sync", max_attempts=5, concurrency=4,
          timeout=900, retry_base=1, retry_max=60)
async def push(ctx: jobs.JobContext, payload: PushJob) -> dict[str, Any]:
    """Commit the project's live state as the user and push it."""
    return await run(ctx, "push", payload)


JOBS: list[jobs.Job[Any]] = [import_repository, pull, push]
