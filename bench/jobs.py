"""Job-queue benchmark: ours against procrastinate and pgqueuer on the same PostgreSQL.

    python bench/jobs.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                         [--repeats 5] [--jobs 4000] [--latency-jobs 200] [--workers 4]

Each system gets its own database (``bench_jobs_<system>``, dropped at the end) and ``--workers``
worker processes of ``--concurrency`` slots each. Per repeat, in a rotating order, each
system runs two phases with the same worker processes:
- throughput: ``--jobs`` no-op jobs committed in one transaction; jobs/s = jobs / (time from
  the commit until the database shows none left unfinished, polled every 10 ms);
- latency: ``--latency-jobs`` jobs enqueued one per transaction, ``--gap-ms`` apart; each
  handler logs ``time.time()`` at its start minus ``time.time()`` taken just before the
  enqueue statement (enqueue -> start, same clock).
Tables are truncated between runs. Results: medians over repeats, printed and written to
``bench/results/jobs-latest.json``. Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from persistence.db import dsn_with_database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402

SYSTEMS = ("ours", "procrastinate", "pgqueuer")


@dataclass
class System:
    name: str
    dsn: str
    setup: Callable[[str], Awaitable[None]]
    truncate: str
    unfinished: str
    enqueue_many: Callable[[asyncpg.Connection, int], Awaitable[None]]
    enqueue_one: Callable[[asyncpg.Connection, float], Awaitable[None]]


# -- ours ------------------------------------------------------------------------------------

async def ours_setup(dsn: str) -> None:
    await migrate_dsn(dsn)


def _ours_job() -> Any:
    from pydantic import BaseModel

    from jobs import JobContext, job

    class Noop(BaseModel):
        t0: float = 0.0

    @job("bench.noop", input=Noop, job_type="sync")
    async def noop(ctx: JobContext, payload: Noop) -> None:
        return None

    return noop, Noop


async def ours_many(conn: asyncpg.Connection, n: int) -> None:
    import jobs

    noop, model = _ours_job()
    async with conn.transaction():
        for _ in range(n):
            await jobs.enqueue(conn, noop, model())


async def ours_one(conn: asyncpg.Connection, t0: float) -> None:
    import jobs

    noop, model = _ours_job()
    await jobs.enqueue(conn, noop, model(t0=t0))


# -- procrastinate ---------------------------------------------------------------------------

async def procrastinate_setup(dsn: str) -> None:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


PROCRASTINATE_DEFER = """
select procrastinate_defer_jobs_v1(array(
  select row('default', 'noop', 0, null, null, a, null)::procrastinate_job_to_defer_v1
  from unnest($1::jsonb[]) as a))
"""


async def procrastinate_many(conn: asyncpg.Connection, n: int) -> None:
    # The library's own batch_defer statement (one insert for all), sent through asyncpg.
    await conn.execute(PROCRASTINATE_DEFER, ["{}"] * n)


async def procrastinate_one(conn: asyncpg.Connection, t0: float) -> None:
    await conn.execute(PROCRASTINATE_DEFER, [json.dumps({"t0": t0})])


# -- pgqueuer --------------------------------------------------------------------------------

async def pgqueuer_setup(dsn: str) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def pgqueuer_many(conn: asyncpg.Connection, n: int) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    await Queries(AsyncpgDriver(conn)).enqueue(["noop"] * n, [None] * n, [0] * n)


async def pgqueuer_one(conn: asyncpg.Connection, t0: float) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    await Queries(AsyncpgDriver(conn)).enqueue("noop", json.dumps({"t0": t0}).encode(), 0)


def systems(admin_dsn: str) -> dict[str, System]:
    def db(name: str) -> str:
        return dsn_with_database(admin_dsn, f"bench_jobs_{name}")

    return {
        "ours": System(
            "ours", db("ours"), ours_setup,
            "truncate public.background_jobs",
            "select count(*) from public.background_jobs where status <> 'completed'",
            ours_many, ours_one),
        "procrastinate": System(
            "procrastinate", db("procrastinate"), procrastinate_setup,
            "truncate procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers,"
            " procrastinate_workers cascade",
            "select count(*) from procrastinate_jobs where status in ('todo', 'doing')",
            procrastinate_many, procrastinate_one),
        "pgqueuer": System(
            "pgqueuer", db("pgqueuer"), pgqueuer_setup,
            "truncate pgqueuer, pgqueuer_log, pgqueuer_statistics",
            "select count(*) from pgqueuer where status in ('queued', 'picked')",
            pgqueuer_many, pgqueuer_one),
    }


# -- running ---------------------------------------------------------------------------------

class Workers:
    def __init__(self, system: System, count: int, concurrency: int, out: Path) -> None:
        self.out = out
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "jobs_worker.py"), system.name, system.dsn,
                 "--concurrency", str(concurrency), "--out", str(out)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT,
                env={**os.environ, "LOG_LEVEL": "warning"},
            )
            for _ in range(count)
        ]

    def wait_ready(self) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"worker did not start: {line!r}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_drained(conn: asyncpg.Connection, query: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        left = await conn.fetchval(query)
        now = time.perf_counter()
        if left == 0:
            return now
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} jobs still unfinished after {timeout} s")
        await asyncio.sleep(0.01)


async def run_one(system: System, args: argparse.Namespace) -> dict[str, float]:
    conn = await asyncpg.connect(system.dsn)
    try:
        await conn.execute(system.truncate)
        await conn.execute("vacuum analyze")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "latency.txt"
            out.touch()
            workers = Workers(system, args.workers, args.concurrency, out)
            try:
                await asyncio.to_thread(workers.wait_ready)
                await asyncio.sleep(0.5)
                # Throughput: everything committed at once, then drained.
                async with conn.transaction():
                    await system.enqueue_many(conn, args.jobs)
                    # (commit happens on leaving the block; the clock starts after it)
                started = time.perf_counter()
                finished = await wait_drained(conn, system.unfinished, 300)
                throughput = args.jobs / (finished - started)
                # Latency: one job at a time, well below saturation.
                for _ in range(args.latency_jobs):
                    await system.enqueue_one(conn, time.time())
                    await asyncio.sleep(args.gap_ms / 1000)
                await wait_drained(conn, system.unfinished, 60)
                deadline = time.monotonic() + 10
                while len(out.read_text().split()) < args.latency_jobs:
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await asyncio.to_thread(workers.stop)
            latencies = sorted(float(x) * 1000 for x in out.read_text().split())
    finally:
        await conn.close()
    if len(latencies) != args.latency_jobs:
        raise RuntimeError(f"{system.name}: {len(latencies)} latency samples")
    return {
        "jobs_per_s": throughput,
        "latency_p50_ms": statistics.median(latencies),
        "latency_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def drop_databases(admin_dsn: str, chosen: dict[str, System]) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        for system in chosen.values():
            await admin.execute(f'drop database if exists "bench_jobs_{system.name}" with (force)')
    finally:
        await admin.close()


async def prepare(admin_dsn: str, chosen: dict[str, System]) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        for system in chosen.values():
            name = f"bench_jobs_{system.name}"
            await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    for system in chosen.values():
        await system.setup(system.dsn)


def prioritize(nice: int) -> None:
    """This process, and so the workers it starts, at ``nice`` (root only), set on the
    autogroup too: with autogroup scheduling plain nice only ranks within one session."""
    if not nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError as exc:
        print(f"running at normal priority ({exc})", file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--nice", type=int, default=-10)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "jobs-latest.json"))
    args = parser.parse_args()
    prioritize(args.nice)
    chosen = {name: systems(args.dsn)[name] for name in args.systems.split(",")}
    await prepare(args.dsn, chosen)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    order = list(chosen)
    for repeat in range(args.repeats):
        for name in order:
            result = await run_one(chosen[name], args)
            runs[name].append(result)
            print(f"repeat {repeat + 1} {name:14s} {result['jobs_per_s']:8.0f} jobs/s  "
                  f"p50 {result['latency_p50_ms']:6.2f} ms  p99 {result['latency_p99_ms']:6.2f}"
                  " ms", flush=True)
        order = order[1:] + order[:1]  # interleave: each system takes each position
    summary = {
        name: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for name, results in runs.items()
    }
    print("\nmedians over", args.repeats, "repeats")
    for name, med in summary.items():
        print(f"{name:14s} {med['jobs_per_s']:8.0f} jobs/s  p50 {med['latency_p50_ms']:6.2f} ms"
              f"  p99 {med['latency_p99_ms']:6.2f} ms")
    if "ours" in summary and len(summary) > 1:
        peers = [n for n in summary if n != "ours"]
        best_tp = max(summary[n]["jobs_per_s"] for n in peers)
        best_p50 = min(summary[n]["latency_p50_ms"] for n in peers)
        best_p99 = min(summary[n]["latency_p99_ms"] for n in peers)
        ratios = {
            "throughput_vs_best_peer": summary["ours"]["jobs_per_s"] / best_tp,
            "p50_vs_best_peer": summary["ours"]["latency_p50_ms"] / best_p50,
            "p99_vs_best_peer": summary["ours"]["latency_p99_ms"] / best_p99,
        }
        print("ours / best peer:", {k: round(v, 2) for k, v in ratios.items()})
        summary["ratios"] = ratios
    Path(args.output).write_text(json.dumps(
        {"args": vars(args), "runs": runs, "medians": summary,
         "loadavg": os.getloadavg()}, indent=2))
    await drop_databases(args.dsn, chosen)


if __name__ == "__main__":
    asyncio.run(main())
