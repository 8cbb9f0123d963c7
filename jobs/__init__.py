"""Background jobs on PostgreSQL's ``background_jobs`` table (the seed's), no broker.

Define a job once, next to the code it belongs to::

    from pydantic import BaseModel
    import jobs

    class SyncRepo(BaseModel):
        repository_id: UUID

    @jobs.job("git.sync", input=SyncRepo, job_type="sync", max_attempts=5, concurrency=2,
              timeout=120)
    async def sync_repo(ctx: jobs.JobContext, payload: SyncRepo) -> dict[str, int]:
        async with ctx.db.service() as conn:
            ...                      # idempotent: it may run again after a crash
        ctx.log.info("pulled %d commits", n)
        return {"commits": n}       # stored in background_jobs.output

and enqueue it in the transaction of the change that asks for it::

    async with db.service() as conn:
        await conn.execute(...)                          # the change
        job_id = await jobs.enqueue(conn, sync_repo, SyncRepo(repository_id=rid),
                                    dedupe_key=f"git.sync:{rid}")

List it in ``server.background.all_jobs()`` so the workers run it.

Guarantees:
- **Exactly when committed**: the row and its NOTIFY are part of the caller's transaction;
  rolled back, no job.
- **At least once**: a job runs until an attempt finishes; a worker killed mid-job (or cut off
  from the database) stops renewing its lease, and the job runs again ``lease_s`` later. A
  result written after the lease was lost is discarded. Handlers must be idempotent.
- **Retries**: a failed attempt is retried after exponential backoff with jitter
  (``status='retrying'``, ``scheduled_for`` in the future) until ``max_attempts``; then
  ``status='failed'`` with the error (and traceback) kept. ``PermanentJobError`` or an input
  that no longer validates fails at once. A timeout counts as a failed attempt.
- **Order**: due jobs are claimed highest ``priority`` first, then oldest ``scheduled_for``;
  no ordering between jobs is promised beyond that.
- **Dedupe**: while a job with a ``dedupe_key`` is unfinished, enqueueing the key again
  returns that job's id and queues nothing.
- **Recurring** (``every=``): one row per period (UTC epoch-aligned); however many workers
  run, a period's job runs once.
- **Shutdown**: ``Worker.stop()`` stops claiming, lets running jobs finish within
  ``shutdown_grace_s`` and puts the rest back (their attempt not counted).

Hooks for observers: ``Worker.on_failure`` (each failed attempt, as a ``JobFailure``) and
``jobs.stats`` (queue depth and failures per job name). See ``docs/jobs.md``.
"""

from jobs.config import JobsConfig, WorkerConfig
from jobs.definition import (
    JOB_TYPES,
    Job,
    JobContext,
    JobOutput,
    JobType,
    PermanentJobError,
    job,
)
from jobs.enqueue import enqueue
from jobs.results import FailureHook, JobFailure
from jobs.worker import Worker

__all__ = [
    "JOB_TYPES",
    "FailureHook",
    "Job",
    "JobContext",
    "JobFailure",
    "JobOutput",
    "JobType",
    "JobsConfig",
    "PermanentJobError",
    "Worker",
    "WorkerConfig",
    "enqueue",
    "job",
]
