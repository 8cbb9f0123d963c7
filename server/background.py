"""Which jobs this deployment runs, and the worker that runs them.

``all_jobs()`` is the one list of registered jobs: add a package's jobs here. ``build_worker``
is the one place a worker is made, for the server's in-process worker and for
``python -m server worker`` alike, so failure hooks added here apply to both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gitsync import jobs as git_jobs
from jobs import Job, Worker
from jobs import maintenance as maintenance_jobs
from jobs.config import WorkerConfig
from persistence.db import Database
from server.secret_jobs import secret_jobs
from server.settings import Settings
from storage import jobs as storage_jobs


def all_jobs(settings: Settings | None = None) -> list[Job[Any]]:
    """Every registered job; those that need the settings (the keyring) only with them."""
    found: list[Job[Any]] = [*maintenance_jobs.JOBS, *git_jobs.JOBS, *storage_jobs.JOBS]
    if settings is not None:
        found += secret_jobs(settings)
    return found


def build_worker(
    settings: Settings,
    db: Database,
    jobs: Sequence[Job[Any]] | None = None,
    config: WorkerConfig | None = None,
    resources: Sequence[object] = (),
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
    )
