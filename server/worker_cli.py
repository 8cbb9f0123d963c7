"""``python -m server worker``: one worker process, apart from the web servers.

SIGTERM or SIGINT: stop claiming, let running jobs finish within ``JOBS_SHUTDOWN_GRACE``,
release the rest, exit 0. ``--jobs module:function`` runs another list of jobs (a function
returning ``list[Job]``, or the list itself), e.g. for a worker that runs only some jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import signal
import uuid
from typing import Any

from ai.analysis import Analyses
from ai.registry import provider_slot
from billing.events import BillingRuntime
from collab.project_presence import EVENT_TAG
from execution.volumes import ProjectVolumes
from gitsync import jobs as git_jobs
from jobs import Job
from observability.service import Observability
from persistence.db import Database
from server import __version__
from server.app import make_broker
from server.background import all_jobs, build_worker
from server.git_wiring import worker_git_runtime
from server.settings import Settings
from storage.objects import ObjectStore

log = logging.getLogger("icreate.worker")


def load_jobs(spec: str) -> list[Job[Any]]:
    module_name, _, attr = spec.partition(":")
    target = getattr(importlib.import_module(module_name), attr or "all_jobs")
    loaded = target() if callable(target) else target
    if not isinstance(loaded, list) or not all(isinstance(j, Job) for j in loaded):
        raise SystemExit(f"--jobs {spec}: not a list of jobs.Job")
    return loaded


async def run_worker(settings: Settings, jobs_spec: str | None, concurrency: int | None) -> int:
    assert settings.database_url
    config = settings.jobs.worker
    if concurrency is not None:
        config = dataclasses.replace(config, concurrency=concurrency)
    jobs = load_jobs(jobs_spec) if jobs_spec else None
    # error_logs (job failures, ERROR records) and the database timings of this process.
    observability = Observability(
        settings.observability, instance_id=settings.instance_id, release=__version__
    )
    # The handlers' pool (ctx.db): one connection per slot; the queue has its own.
    db = await Database.connect(
        settings.database_url, min_size=1, max_size=config.concurrency + 1,
        on_query=observability.observe_query,
    )
    await observability.start(db)
    # The analyses' provider (started on first use) and, with Redis, the project channel
    # their results are announced on; owned here for the worker's lifetime.
    slot = provider_slot(settings.ai, settings.data_dir)
    await slot.start()  # the embedded model launches in the background
    broker = make_broker(settings) if settings.redis_url else None
    if broker is not None:
        await broker.start()

    async def publish(project_id: uuid.UUID, event: dict[str, Any]) -> None:
        assert broker is not None
        text = json.dumps(event, default=str)
        await broker.publish(f"project:{project_id}", EVENT_TAG + text.encode())

    analyses = Analyses(db, slot, settings.ai, publish if broker is not None else None)
    billing = BillingRuntime.from_config(settings.billing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        chosen = all_jobs(settings) if jobs is None else jobs
        wants_git = any(j in git_jobs.JOBS for j in chosen)
        runtime = worker_git_runtime(settings, db) if wants_git else contextlib.nullcontext()
        async with runtime as git:
            if git is None:
                chosen = [j for j in chosen if j not in git_jobs.JOBS]
            objects = git.objects if git is not None else \
                ObjectStore.from_config(settings.storage)
            # The workdirs of this machine (projects.cleanup removes deleted projects').
            disks = ProjectVolumes(settings.execution)
            worker = build_worker(settings, db, chosen, config,
                                  resources=[objects, analyses, disks, billing,
                                             *([git] if git is not None else [])],
                                  errors=observability.errors)
            await worker.start()
            await worker.ready.wait()
            log.info("jobs worker %s ready: %s", worker.worker_id, ", ".join(worker.jobs))
            await stop.wait()
            log.info("jobs worker %s stopping", worker.worker_id)
            await worker.stop()
            await disks.close()
    finally:
        await slot.close()
        if billing is not None:
            await billing.close()
        if broker is not None:
            await broker.close()
        await observability.stop()
        await db.close()
    log.info("jobs worker %s stopped: %s", worker.worker_id, worker.counts)
    return 0
