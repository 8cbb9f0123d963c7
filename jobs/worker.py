"""The worker: claims due jobs, runs their handlers, writes what happened.

Why over 400 lines: claiming, leases, retries and stopping share the worker's running set
and its one loop; job definitions, enqueueing and housekeeping are their own modules.

One ``Worker`` per process (the server runs one inside unless told not to;
``python -m server worker`` runs one apart). It owns, all stopped by ``stop()``: a LISTEN
connection (NOTIFY wakes it within milliseconds of a commit), a small pool for the queue's
own statements (see QUEUE_POOL_SIZE), the claim loop, the result writer
(``jobs.results``), and the housekeeping loop (heartbeat of its running jobs, reaping of
expired leases, re-LISTEN after a lost connection). Handlers get ``db`` as ``ctx.db``.

Bounds: a job whose worker died runs again within ``lease_s`` plus a third of it; an idle
worker runs one claim per ``poll_interval_s``; ``stop`` returns within ``shutdown_grace_s``
plus a few seconds, with every running job either finished or released to the queue.
(Over 400 lines: the claim loop, the runners and the lease housekeeping share one set of
running-job state; results and failure records live in ``jobs.results``.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg
from pydantic import ValidationError

from jobs import queries
from jobs.config import WorkerConfig
from jobs.definition import Job, JobContext, PermanentJobError, output_json
from jobs.results import DB_ERRORS, FailureHook, JobFailure, ResultWriter, error_text
from jobs.timing import CHANNEL, parse_wake, retry_delay, wake_payload
from persistence.db import Database

log = logging.getLogger(__name__)

MAX_KNOWN_DUE = 10_000  # future wake-ups remembered; beyond that the poll finds them
STOP_AFTER_CANCEL_S = 2.0
# The queue's own statements use a small pool of their own, with synchronous_commit off: a
# claim or a result is not worth an fsync wait, because a PostgreSQL crash that forgets the
# last few hundred ms of them only makes those jobs run again (at-least-once, as for a
# killed worker). Enqueue is the caller's transaction and keeps its durability; so do the
# handlers' own writes (ctx.db). A separate pool also keeps claims going when handlers or
# requests hold every connection of the app's pool.
QUEUE_POOL_SIZE = 4


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset round trip: these connections set nothing."""


class _JobLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        prefix = f"[{extra['job_name']} {extra['job_id']} attempt {extra['attempt']}]"
        return f"{prefix} {msg}", kwargs


@dataclass
class _Running:
    job: Job[Any]
    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    task: asyncio.Task[None] | None = None
    lease_lost: bool = False


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        db: Database,
        jobs: Iterable[Job[Any]],
        *,
        dsn: str,
        config: WorkerConfig | None = None,
        worker_id: str | None = None,
        on_failure: Iterable[FailureHook] = (),
        resources: Iterable[object] = (),
    ) -> None:
        self.db = db
        # Lent to handlers by type (JobContext.resource).
        self.resources: dict[type, object] = {type(r): r for r in resources}
        self.dsn = dsn
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or default_worker_id()
        self.jobs: dict[str, Job[Any]] = {}
        for job in jobs:
            if job.name in self.jobs:
                raise ValueError(f"job {job.name!r} registered twice")
            self.jobs[job.name] = job
        # Called after every failed attempt (the observability module writes error_logs).
        self.on_failure: list[FailureHook] = list(on_failure)
        self.ready = asyncio.Event()  # set once the first claim is done
        self._counts: collections.Counter[str] = collections.Counter()
        self._running: dict[uuid.UUID, _Running] = {}
        self._running_by_name: collections.Counter[str] = collections.Counter()
        self._results = ResultWriter(self._queue, self.worker_id)
        self._wake = asyncio.Event()
        self._maybe_more = True
        self._notified = 0  # bumped per relevant NOTIFY, so one arriving mid-claim counts
        self._due: list[float] = []  # epoch seconds of known future jobs (a heap)
        self._next_poll = 0.0
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._claim_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Attempts so far: claimed, completed, retried, failed, reaped (for metrics)."""
        return {**self._counts, "completed": self._results.written}

    def health(self) -> dict[str, Any]:
        """For /healthz: is it listening, what runs, what it did."""
        return {
            "worker_id": self.worker_id,
            "listening": self._listener is not None and not self._listener.is_closed(),
            "running": len(self._running),
            **self.counts,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=QUEUE_POOL_SIZE, reset=_no_reset,
            server_settings={"synchronous_commit": "off", "application_name": "jobs-worker"},
        )
        try:
            await self._listen()
            await self._ensure_periods()
        except BaseException:
            await self._close_connections()
            raise
        self._claim_task = asyncio.create_task(self._claim_loop(), name="jobs-claim")
        self._flush_task = asyncio.create_task(self._results.run(), name="jobs-results")
        self._tasks = [
            self._claim_task,
            self._flush_task,
            asyncio.create_task(self._housekeeping_loop(), name="jobs-housekeeping"),
        ]

    @contextlib.asynccontextmanager
    async def _queue(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for the queue's own statements (claims, results, leases)."""
        assert self._pool is not None, "Worker.start() first"
        async with self._pool.acquire() as conn:
            yield cast(asyncpg.Connection, conn)

    async def _ensure_periods(self) -> None:
        """The current period's row of every recurring job, if missing (idempotent)."""
        for job in self.jobs.values():
            if job.every_s is not None:
                async with self._queue() as conn:
                    await conn.execute(
                        queries.ENSURE_PERIOD, job.name, job.job_type,
                        job.input().model_dump_json(), job.priority, job.max_attempts, job.every_s,
                    )

    async def stop(self) -> None:
        """Stop claiming; let running jobs finish within the grace period, release the rest."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._claim_task is not None:
            await asyncio.wait([self._claim_task], timeout=STOP_AFTER_CANCEL_S)
        running = [r.task for r in self._running.values() if r.task is not None]
        if running:
            _, pending = await asyncio.wait(running, timeout=self.config.shutdown_grace_s)
            if pending:
                leftover = [r.job_id for r in self._running.values() if r.task in pending]
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=STOP_AFTER_CANCEL_S)
                await self._release(leftover)
        if self._flush_task is not None:
            self._results.close()
            await asyncio.wait([self._flush_task], timeout=STOP_AFTER_CANCEL_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_connections()

    async def _close_connections(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*DB_ERRORS):
                await self._listener.close(timeout=2)
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(*DB_ERRORS):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    # -- waking ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        self._listener = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        name, due = parse_wake(str(payload))
        if name not in self.jobs:
            return
        if due is not None and due > time.time():
            if len(self._due) < MAX_KNOWN_DUE:
                heapq.heappush(self._due, due)
        else:
            self._notified += 1
            self._maybe_more = True
        self._wake.set()

    def _wait_timeout(self) -> float:
        timeout = self._next_poll - time.monotonic()
        if self._due:
            timeout = min(timeout, self._due[0] + 0.005 - time.time())
        return max(timeout, 0.0)

    def _timer_fired(self) -> None:
        now = time.time()
        while self._due and self._due[0] <= now + 0.005:
            heapq.heappop(self._due)
        self._maybe_more = True

    # -- claiming ----------------------------------------------------------------------------

    def _claim_plan(self) -> tuple[list[str], list[int], list[float], int] | None:
        free = self.config.concurrency - len(self._running)
        if free <= 0:
            return None
        names: list[str] = []
        slots: list[int] = []
        every: list[float] = []
        for job in self.jobs.values():
            cap = free
            if job.concurrency is not None:
                cap = min(free, job.concurrency - self._running_by_name[job.name])
            if cap > 0:
                names.append(job.name)
                slots.append(cap)
                every.append(job.every_s or 0.0)
        return (names, slots, every, free) if names else None

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            plan = self._claim_plan() if self._maybe_more else None
            if plan is not None:
                try:
                    await self._claim(*plan)
                except DB_ERRORS:
                    log.exception("jobs: claim failed; next try at the poll interval")
                    self._maybe_more = False
                self._next_poll = time.monotonic() + self.config.poll_interval_s
                continue
            self.ready.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self._wait_timeout())
            except TimeoutError:
                self._timer_fired()

    async def _claim(self, names: list[str], slots: list[int], every: list[float], limit: int
                     ) -> None:
        notified_before = self._notified
        async with self._queue() as conn:
            rows = await conn.fetch(
                queries.CLAIM, names, slots, every, limit, self.worker_id, self.config.lease_s
            )
        got = collections.Counter(row["job_name"] for row in rows)
        self._maybe_more = (
            len(rows) >= limit
            or any(got[name] >= cap for name, cap in zip(names, slots, strict=True))
            or self._notified != notified_before
        )
        for row in rows:
            self._start(row)
        for row in rows:
            job = self.jobs[row["job_name"]]
            if job.every_s is not None and row["period_start"] is not None:
                # The claim inserted the next period's row: wake for it, here and elsewhere.
                next_start = (time.time() // job.every_s + 1) * job.every_s
                heapq.heappush(self._due, next_start)
                await self._notify(wake_payload(job.name, next_start))

    def _start(self, row: asyncpg.Record) -> None:
        job = self.jobs[row["job_name"]]
        entry = _Running(job, row["id"], row["attempts"], row["max_attempts"])
        self._running[entry.job_id] = entry
        self._running_by_name[job.name] += 1
        self._counts["claimed"] += 1
        entry.task = asyncio.create_task(
            self._run(entry, row["input"], row["period_start"]), name=f"job-{job.name}"
        )

    async def _notify(self, payload: str) -> None:
        try:
            async with self._queue() as conn:
                await conn.execute(queries.NOTIFY, payload)
        except DB_ERRORS:
            log.warning("jobs: NOTIFY %s failed; other workers will poll", payload)

    # -- running -----------------------------------------------------------------------------

    async def _run(self, entry: _Running, raw_input: str, period_start: datetime | None) -> None:
        job = entry.job
        ctx = JobContext(
            job_id=entry.job_id, job_name=job.name, attempt=entry.attempt,
            max_attempts=entry.max_attempts, worker_id=self.worker_id,
            period_start=period_start, db=self.db,
            log=_JobLog(logging.getLogger(f"jobs.{job.name}"),
                        {"job_name": job.name, "job_id": entry.job_id, "attempt": entry.attempt}),
            _heartbeat=self._heartbeat_one, _resources=self.resources,
        )
        try:
            try:
                payload = job.parse(raw_input)
                async with asyncio.timeout(job.timeout_s):
                    output = await job.handler(ctx, payload)
                result = output_json(output)
            except asyncio.CancelledError:
                if entry.lease_lost:
                    ctx.log.warning("cancelled: its lease went to another worker")
                    return
                raise
            except (ValidationError, PermanentJobError) as exc:
                await self._failed(entry, exc, permanent=True)
            except TimeoutError as exc:
                await self._failed(entry, exc, permanent=False,
                                   note=f"timed out after {job.timeout_s:g} s")
            except Exception as exc:  # a handler's failure is data: stored, retried, reported
                await self._failed(entry, exc, permanent=False)
            else:
                self._results.add(entry.job_id, entry.attempt, result)
        finally:
            del self._running[entry.job_id]
            self._running_by_name[job.name] -= 1
            self._wake.set()

    async def _failed(self, entry: _Running, exc: BaseException, *, permanent: bool,
                      note: str | None = None) -> None:
        job = entry.job
        error = error_text(exc, note)
        headline = error.partition("\n")[0]
        final = permanent or entry.attempt >= entry.max_attempts
        log.warning("jobs: %s %s attempt %d/%d failed%s: %s", job.name, entry.job_id,
                    entry.attempt, entry.max_attempts, "" if final else ", will retry", headline)
        try:
            async with self._queue() as conn:
                if final:
                    await conn.fetch(
                        queries.FAIL, entry.job_id, entry.attempt, self.worker_id, error
                    )
                else:
                    delay = retry_delay(entry.attempt, job.retry_base_s, job.retry_max_s)
                    wake = wake_payload(job.name, time.time() + delay)
                    await conn.fetch(queries.RETRY, entry.job_id, entry.attempt,
                                     self.worker_id, error, delay, wake)
        except DB_ERRORS:
            log.exception("jobs: could not record the failure of %s; its lease will expire",
                          entry.job_id)
        self._counts["failed" if final else "retried"] += 1
        await self._report(JobFailure(
            entry.job_id, job.name, job.job_type, entry.attempt, entry.max_attempts, final,
            error, exc, self.worker_id,
        ))

    async def _report(self, failure: JobFailure) -> None:
        for hook in self.on_failure:
            try:
                await hook(failure)
            except Exception:  # a broken reporter must not stop the worker
                log.exception("jobs: failure hook %r raised", hook)

    # -- leases ------------------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        interval = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))
            try:
                await self._heartbeat_all()
                await self._reap()
                if self._listener is None or self._listener.is_closed():
                    await self._relisten()
            except DB_ERRORS:
                log.exception("jobs: housekeeping failed; next round in %.1f s", interval)

    async def _heartbeat_all(self) -> None:
        ids = list(self._running)
        if not ids:
            return
        async with self._queue() as conn:
            rows = await conn.fetch(queries.HEARTBEAT, ids, self.worker_id, self.config.lease_s)
        kept = {row["id"] for row in rows}
        for job_id in ids:
            entry = self._running.get(job_id)
            if job_id not in kept and entry is not None and entry.task is not None:
                entry.lease_lost = True
                entry.task.cancel()

    async def _heartbeat_one(self, job_id: uuid.UUID) -> bool:
        async with self._queue() as conn:
            rows = await conn.fetch(
                queries.HEARTBEAT, [job_id], self.worker_id, self.config.lease_s
            )
        return bool(rows)

    async def _reap(self) -> None:
        async with self._queue() as conn:
            rows = await conn.fetch(queries.REAP)
        for row in rows:
            log.warning("jobs: %s %s: %s", row["job_name"], row["id"], row["error"])
            self._counts["reaped"] += 1
            await self._report(JobFailure(
                row["id"], row["job_name"], row["job_type"], row["attempts"],
                row["max_attempts"], row["status"] == "failed", row["error"], None,
                self.worker_id,
            ))

    async def _relisten(self) -> None:
        if self._listener is not None:
            self._listener.terminate()
        self._listener = None
        await self._listen()
        # NOTIFYs sent while deaf are lost: look now. A database restart may also have lost
        # the last asynchronous commits, a chained period row among them.
        await self._ensure_periods()
        self._maybe_more = True
        self._wake.set()
        log.info("jobs: listening again")

    async def _release(self, job_ids: list[uuid.UUID]) -> None:
        if not job_ids:
            return
        try:
            async with self._queue() as conn:
                await conn.fetch(queries.RELEASE, job_ids, self.worker_id)
        except DB_ERRORS:
            log.exception("jobs: releasing %d job(s) failed; their leases will expire",
                          len(job_ids))
        else:
            log.info("jobs: released %d unfinished job(s) at shutdown", len(job_ids))
