"""One worker process of one queue system for ``bench/jobs.py``.

    python bench/jobs_worker.py ours|procrastinate|pgqueuer DSN --concurrency 10 --out FILE

Runs no-op jobs of the name ``noop``; a job whose payload carries ``t0`` (the enqueuer's
``time.time()`` just before it enqueued) appends ``time.time() - t0`` at the handler's start
to FILE (one line per job). Prints ``ready`` when listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Recorder:
    def __init__(self, path: str) -> None:
        self.file: TextIO = open(path, "a", buffering=1)  # open as long as the process

    def started(self, t0: float | None) -> None:
        if t0:
            self.file.write(f"{time.time() - t0:.6f}\n")


async def run_ours(dsn: str, concurrency: int, rec: Recorder, stop: asyncio.Event) -> None:
    from pydantic import BaseModel

    from jobs import JobContext, Worker, WorkerConfig, job
    from persistence.db import Database

    class Noop(BaseModel):
        t0: float = 0.0

    @job("bench.noop", input=Noop, job_type="sync")
    async def noop(ctx: JobContext, payload: Noop) -> None:
        rec.started(payload.t0)

    db = await Database.connect(dsn, min_size=2, max_size=concurrency + 3)
    worker = Worker(db, [noop], dsn=dsn, config=WorkerConfig(concurrency=concurrency))
    await worker.start()
    await worker.ready.wait()
    print("ready", flush=True)
    await stop.wait()
    await worker.stop()
    await db.close()


async def run_procrastinate(dsn: str, concurrency: int, rec: Recorder,
                            stop: asyncio.Event) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(t0: float = 0.0) -> None:
        rec.started(t0)

    async with app.open_async():
        task = asyncio.create_task(app.run_worker_async(
            concurrency=concurrency, install_signal_handlers=False, wait=True))
        await asyncio.sleep(1.0)  # the worker has no ready signal: let it LISTEN first
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def run_pgqueuer(dsn: str, concurrency: int, rec: Recorder, stop: asyncio.Event) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, PgQueuer
    from pgqueuer.models import Job

    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        rec.started(json.loads(job.payload)["t0"] if job.payload else None)

    task = asyncio.create_task(pgq.run(batch_size=concurrency))
    await asyncio.sleep(1.0)
    print("ready", flush=True)
    await stop.wait()
    pgq.shutdown.set()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    await conn.close()


RUNNERS: dict[str, Callable[[str, int, Recorder, asyncio.Event], Awaitable[None]]] = {
    "ours": run_ours, "procrastinate": run_procrastinate, "pgqueuer": run_pgqueuer,
}


async def main(args: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await RUNNERS[args.system](args.dsn, args.concurrency, Recorder(args.out), stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=sorted(RUNNERS))
    parser.add_argument("dsn")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", required=True)
    asyncio.run(main(parser.parse_args()))
