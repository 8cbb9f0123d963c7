"""What a job is: a name, a typed input, a handler and its limits (``@job``)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel

if TYPE_CHECKING:
    from persistence.db import Database

# The seed's categories (background_jobs.job_type check constraint).
JobType = Literal["ai_processing", "code_execution", "file_processing", "sync", "cleanup"]
JOB_TYPES: tuple[str, ...] = get_args(JobType)

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the input model, as in Job[I]
R = TypeVar("R")

# What a handler may return; stored in background_jobs.output.
JobOutput = BaseModel | Mapping[str, Any] | None

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
# Recurring rows are kept at least this long after they finish (jobs.prune_finished), so a
# period longer than this could be scheduled twice.
MAX_PERIOD = timedelta(days=7)


class PermanentJobError(Exception):
    """Raised by a handler for a failure that retrying cannot fix: the job fails at once."""


@dataclass
class JobContext:
    """What a running handler gets beside its input."""

    job_id: uuid.UUID
    job_name: str
    attempt: int  # 1 for the first run; counts runs whose worker died too
    max_attempts: int
    worker_id: str
    # The recurring period this run stands for (None for a job enqueued by hand).
    period_start: datetime | None
    db: Database
    log: logging.LoggerAdapter[logging.Logger]
    _heartbeat: Callable[[uuid.UUID], Awaitable[bool]]
    # What the process that runs the worker lends its handlers beyond ``db`` (e.g. the
    # git jobs' runtime with the document hub), by type: ``ctx.resource(GitRuntime)``.
    _resources: Mapping[type, object] = field(default_factory=dict)

    def resource(self, kind: type[R]) -> R:
        """The worker's resource of this type; ``PermanentJobError`` when it has none
        (a worker process started without what this job needs)."""
        found = self._resources.get(kind)
        if not isinstance(found, kind):
            raise PermanentJobError(f"this worker has no {kind.__name__}")
        return found

    async def heartbeat(self) -> bool:
        """Extend this job's lease now; False when the lease was lost (another worker
        took the job over, e.g. after this process was cut off from the database for longer
        than the lease). The worker also does this for every running job on its own."""
        return await self._heartbeat(self.job_id)


Handler = Callable[[JobContext, I], Awaitable[JobOutput]]


@dataclass(frozen=True)
class Job(Generic[I]):
    """A registered kind of job. Enqueue with ``jobs.enqueue(conn, this, payload)``."""

    name: str
    job_type: JobType
    input: type[I]
    handler: Handler[I]
    max_attempts: int = 3
    # Jobs of this name one worker process runs at once (None: only the worker's limit).
    concurrency: int | None = None
    timeout_s: float = 300.0
    # Retry n waits about retry_base_s * 2**(n-1) (capped at retry_max_s), half of it jittered.
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    # Recurring: one run per period of this many seconds (UTC epoch-aligned periods).
    every_s: float | None = None
    priority: int = 0

    def parse(self, raw_input: str) -> I:
        return self.input.model_validate_json(raw_input)


def job(
    name: str,
    *,
    input: type[I],  # the seed's column is called input
    job_type: JobType,
    max_attempts: int = 3,
    concurrency: int | None = None,
    timeout: float = 300.0,
    retry_base: float = 1.0,
    retry_max: float = 300.0,
    every: timedelta | None = None,
    priority: int = 0,
) -> Callable[[Handler[I]], Job[I]]:
    """Decorator: turn ``async def handler(ctx, payload) -> output`` into a ``Job``.

    ``every`` makes it recurring: the worker keeps one row per period (its input is
    ``input()``, so every field needs a default).
    """
    if not NAME_PATTERN.match(name):
        raise ValueError(f"job name {name!r}: lower-case dotted identifiers only")
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type {job_type!r} not one of {JOB_TYPES}")
    if max_attempts < 1 or (concurrency is not None and concurrency < 1) or timeout <= 0:
        raise ValueError("max_attempts, concurrency and timeout must be positive")
    every_s = every.total_seconds() if every is not None else None
    if every_s is not None:
        if not 0 < every_s <= MAX_PERIOD.total_seconds():
            raise ValueError(f"every must be within (0, {MAX_PERIOD}]")
        input()  # recurring inputs are built from defaults: fail at import, not at run

    def wrap(handler: Handler[I]) -> Job[I]:
        return Job(
            name=name, job_type=job_type, input=input, handler=handler,
            max_attempts=max_attempts, concurrency=concurrency, timeout_s=timeout,
            retry_base_s=retry_base, retry_max_s=retry_max, every_s=every_s, priority=priority,
        )

    return wrap


def output_json(output: JobOutput) -> str | None:
    """The handler's result as JSON text for background_jobs.output."""
    if output is None:
        return None
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    return json.dumps(dict(output), default=str)
