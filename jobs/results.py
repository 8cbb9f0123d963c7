"""What became of an attempt: the completion writer and the failure record given to hooks."""

from __future__ import annotations

import asyncio
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import asyncpg

from jobs import queries

log = logging.getLogger(__name__)

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
MAX_ERROR_CHARS = 8000
RETRY_WRITE_S = 0.5


@dataclass(frozen=True)
class JobFailure:
    """One failed attempt, as given to ``Worker.on_failure`` hooks."""

    job_id: uuid.UUID
    job_name: str
    job_type: str
    attempt: int
    max_attempts: int
    final: bool  # True: the job is now 'failed'; False: it will be retried
    error: str  # what background_jobs.error holds
    exception: BaseException | None  # None when a lease expired (the worker died)
    worker_id: str


FailureHook = Callable[[JobFailure], Awaitable[None]]


def error_text(exc: BaseException, headline: str | None = None) -> str:
    """The headline (``Type: message`` by default) and the traceback, bounded."""
    first = headline or f"{type(exc).__name__}: {exc}"
    return f"{first}\n{''.join(traceback.format_exception(exc))}"[:MAX_ERROR_CHARS]


@dataclass
class _Completion:
    job_id: uuid.UUID
    attempt: int
    output: str | None


class ResultWriter:
    """Writes finished jobs: whatever finished while the previous write was in flight goes
    in the next single statement (group commit without a timer).

    A result not yet written when the process dies is lost with it; the job's lease then
    expires and it runs again (at-least-once).
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
        worker_id: str,
    ) -> None:
        self._connect = connect
        self._worker_id = worker_id
        self._pending: list[_Completion] = []
        self._wake = asyncio.Event()
        self._closing = False
        self.written = 0

    def add(self, job_id: uuid.UUID, attempt: int, output: str | None) -> None:
        self._pending.append(_Completion(job_id, attempt, output))
        self._wake.set()

    def close(self) -> None:
        """Ask ``run`` to write what is pending and return."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except DB_ERRORS:
                log.exception("jobs: writing results failed; retrying")
                await asyncio.sleep(RETRY_WRITE_S)
                self._wake.set()
                continue
            if self._closing:
                return

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._connect() as conn:
                    rows = await conn.fetch(
                        queries.COMPLETE, [c.job_id for c in batch], [c.attempt for c in batch],
                        [c.output for c in batch], self._worker_id,
                    )
            except BaseException:
                self._pending[:0] = batch
                raise
            self.written += len(rows)
            if len(rows) < len(batch):
                kept = {row["id"] for row in rows}
                lost = [str(c.job_id) for c in batch if c.job_id not in kept]
                log.warning("jobs: lease lost before the result was written: %s", lost)
