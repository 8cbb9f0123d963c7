"""error_logs: every unhandled exception, with severity and context, and its Sentry event.

Three ways in, one ``report``:
- the request middleware reports exceptions escaping a REST handler or a socket handler,
  with the request's route, user and project;
- a logging handler on the root logger reports every ``ERROR``/``CRITICAL`` record, which is
  how background tasks in this code base end (``log.exception(...)`` in hubs, asyncio's
  "Task exception was never retrieved"); an exception already reported by the middleware is
  skipped when uvicorn logs it again;
- ``job_failed`` for the job queue's failures (the hook the worker calls).

``report`` may be called from any thread: it redacts, captures to Sentry (when configured)
and appends the row to a bounded queue; one owned task inserts the queue in batches. Past
``capacity`` pending rows, new ones are dropped and counted (``icreate_error_logs_dropped_total``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from observability.redact import redact_text, redact_value
from observability.sentry import Sentry
from persistence.db import Database
from persistence.observability import insert_error_logs

log = logging.getLogger(__name__)

REPORTED = Counter("icreate_error_logs_total", "Errors reported to error_logs", ["severity"])
DROPPED = Counter("icreate_error_logs_dropped_total", "error_logs rows not written")

SEVERITY_BY_LEVEL = {logging.CRITICAL: "fatal", logging.ERROR: "error", logging.WARNING: "warning"}
SENTRY_LEVEL = {"fatal": "fatal", "error": "error", "warning": "warning", "info": "info"}
MAX_MESSAGE = 4_000
MAX_STACK = 32_000
# Set on an exception once reported, so a second path (uvicorn's log line) skips it.
MARK = "_icreate_error_reported"


def _parse_uuid(value: str | uuid.UUID | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def already_reported(exc: BaseException) -> bool:
    return bool(getattr(exc, MARK, False))


def _mark(exc: BaseException) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, MARK, True)


def format_stack(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


class ErrorReporter:
    def __init__(
        self, db: Database, *, environment: str, instance_id: str, capacity: int,
        sentry: Sentry | None = None, flush_s: float = 1.0,
    ) -> None:
        self.db = db
        self.environment = environment
        self.instance_id = instance_id
        self.capacity = capacity
        self.sentry = sentry
        self.flush_s = flush_s
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.handler = ErrorLogHandler(self)

    # -- reporting (any thread) ---------------------------------------------------------

    def report(
        self,
        exc: BaseException | None = None,
        *,
        message: str | None = None,
        severity: str = "error",
        context: dict[str, Any] | None = None,
        user_id: str | uuid.UUID | None = None,
        project_id: str | uuid.UUID | None = None,
        error_type: str | None = None,
        stack_trace: str | None = None,
    ) -> dict[str, Any] | None:
        """Queue one error_logs row (and send it to Sentry); the row, or None if skipped."""
        if exc is not None:
            if already_reported(exc):
                return None
            _mark(exc)
        text = redact_text((message if message is not None else str(exc or ""))[:MAX_MESSAGE])
        stack = stack_trace if stack_trace is not None else (
            format_stack(exc) if exc is not None else None
        )
        full_context = redact_value({"instance": self.instance_id, **(context or {})})
        user = _parse_uuid(user_id)
        sentry_id = None
        if self.sentry is not None:
            sentry_id = self.sentry.capture(
                exc, text, level=SENTRY_LEVEL[severity], context=full_context,
                user_id=str(user) if user else None,
            )
        row = {
            "created_at": datetime.now(UTC),
            "user_id": user,
            "project_id": _parse_uuid(project_id),
            "sentry_issue_id": sentry_id,
            "error_type": error_type or (type(exc).__name__ if exc is not None else "error"),
            "message": text or (type(exc).__name__ if exc is not None else "error"),
            "stack_trace": redact_text(stack[-MAX_STACK:]) if stack else None,
            "context": full_context,
            "severity": severity,
            "environment": self.environment,
        }
        REPORTED.labels(severity).inc()
        if len(self._pending) >= self.capacity:
            DROPPED.inc()
            return row
        self._pending.append(row)
        self._notify()
        return row

    def job_failed(
        self, job_name: str, job_id: str | uuid.UUID, *, attempts: int, final: bool,
        exc: BaseException | None = None, error: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """The job queue's hook: a failed attempt (``warning``) or a job out of attempts
        (``error``), with the job's name, id and attempt count as context."""
        self.report(
            exc,
            message=error if exc is None else None,
            severity="error" if final else "warning",
            error_type=type(exc).__name__ if exc is not None else "JobFailed",
            context={"kind": "job", "job_name": job_name, "job_id": str(job_id),
                     "attempts": attempts, "final": final, **(context or {})},
        )

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    # -- the writer ---------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="error-log-writer")
        logging.getLogger().addHandler(self.handler)

    async def stop(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.flush()
        self._loop = self._wake = None
        if self.sentry is not None:
            await self.sentry.close()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Insert everything pending now (also what tests call to wait for rows)."""
        while self._pending:
            rows = [self._pending.popleft() for _ in range(min(500, len(self._pending)))]
            try:
                async with self.db.service() as conn:
                    await insert_error_logs(conn, rows)
            except asyncio.CancelledError:
                self._pending.extendleft(reversed(rows))
                raise
            except Exception:
                DROPPED.inc(len(rows))
                log.warning("error_logs: %d rows not written", len(rows), exc_info=True)


class ErrorLogHandler(logging.Handler):
    """``ERROR`` and ``CRITICAL`` records of any logger -> ``ErrorReporter.report``."""

    def __init__(self, reporter: ErrorReporter) -> None:
        super().__init__(logging.ERROR)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("observability."):
            return  # the reporter's own troubles: logged, never reported to itself
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None and already_reported(exc):
                return
            message = record.getMessage()
            if exc is not None and str(exc):
                message = f"{message}: {exc}"
            self.reporter.report(
                exc,
                message=message,
                severity=SEVERITY_BY_LEVEL.get(record.levelno, "error"),
                error_type=type(exc).__name__ if exc is not None else "LoggedError",
                stack_trace=(format_stack(exc) if exc is not None else record.stack_info),
                context={"kind": "log", "logger": record.name,
                         "where": f"{record.module}:{record.lineno}"},
            )
        except Exception:
            self.handleError(record)
