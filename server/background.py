"""Which jobs this deployment runs, and the worker that runs them.

``all_jobs()`` is the one list of registered jobs: add a package's jobs here. ``build_worker``
is the one place a worker is made, for the server's in-process worker and for
``python -m server worker`` alike, so failure hooks added here apply to both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ai import analysis as analysis_jobs
from billing import events as billing_events
from billing import meter as billing_meter
from execution import cleanup as cleanup_jobs
from gitsync import jobs as git_jobs
from jobs import Job, Worker
from jobs import maintenance as maintenance_jobs
from jobs.config import WorkerConfig
from jobs.results import FailureHook, JobFailure
from observability.errors import ErrorReporter
from persistence.db import Database
from preview import builds as deployment_jobs
from server.secret_jobs import secret_jobs
from server.settings import Settings
from storage import jobs as storage_jobs


def all_jobs(settings: Settings | None = None) -> list[Job[Any]]:
    """Every registered job; those that need the settings (the keyring) only with them."""
    found: list[Job[Any]] = [*maintenance_jobs.JOBS, *git_jobs.JOBS, *storage_jobs.JOBS,
                             *analysis_jobs.JOBS, *cleanup_jobs.JOBS, *deployment_jobs.JOBS,
                             *billing_events.JOBS, *billing_meter.JOBS]
    if settings is not None:
        found += secret_jobs(settings)
    return found


def report_failures_to(errors: ErrorReporter) -> FailureHook:
    """Job failures into error_logs (and Sentry): a retried attempt as a warning, a job out
    of attempts as an error, with the job's name, id, type and attempt as context."""

    async def report(failure: JobFailure) -> None:
        errors.job_failed(
            failure.job_name, failure.job_id, attempts=failure.attempt, final=failure.final,
            exc=failure.exception, error=failure.error,
            context={"job_type": failure.job_type, "max_attempts": failure.max_attempts,
                     "worker": failure.worker_id},
        )

    return report


def build_worker(
    settings: Settings,
    db: Database,
    jobs: Sequence[Job[Any]] | None = None,
    config: WorkerConfig | None = None,
    resources: Sequence[object] = (),
    errors: ErrorReporter | None = None,
) -> Worker:
    """``resources``: what handlers get by type (``ctx.resource``), e.g. the git runtime."""
    assert settings.database_url
    return Worker(
        db,
        all_jobs(settings) if jobs is None else jobs,
        dsn=settings.database_url,
        config=config or settings.jobs.worker,
        worker_id=f"{settings.instance_id}:{os.getpid()}",
        resources=resources,
        on_failure=[report_failures_to(errors)] if errors is not None else (),
    )
