"""Run-queue benchmark: how long a light run waits while another tenant floods the sandbox.

    .venv/bin/python bench/fair_queue.py [--window 20] [--flood 16] [--every 1.0]
                                         [--repeat 1] [--flood-kind busy|sleep] [--no-readme]

One process: PostgreSQL (``DATABASE_URL``: a fresh database created and dropped on it; else
an embedded ``pgserver``), then for each policy an ``ExecutionHub`` with the local sandbox
(8 slots, the defaults), the old global FIFO (``EXECUTION_QUEUE=fifo``) and the fair queue
(tenants take turns, 4 runs per user and per project), interleaved. In each round tenant F
(its own workspace) keeps ``--flood`` busy loops submitted (``while True: pass``, 3 s CPU
and wall limits; a finished one is replaced at once), and tenant L (another workspace)
submits ``print(1)`` every ``--every`` seconds for ``--window`` seconds. A light run's
**wait** is submit -> ``execution.started`` (the scheduler's part), its **total** submit ->
``execution.finished`` (its run shares the CPU with the flood's loops). Both are read from
the hub's events as they are published.

Results: bench/results/fair-queue-latest.json and a section of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from report import replace_section  # noqa: E402

from execution.config import ExecutionConfig  # noqa: E402
from execution.runner import ExecutionHub, RunLimits  # noqa: E402
from persistence.db import Database, dsn_with_database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from tests.support import factories  # noqa: E402

RESULTS = BENCH / "results"
README = BENCH / "README.md"
START, END = "<!-- fair-queue:start -->", "<!-- fair-queue:end -->"
FLOODS = {"busy": "while True: pass", "sleep": "import time\ntime.sleep(3)"}
FLOOD_LIMITS = RunLimits(cpu_time_s=3, wall_time_s=3)
LIGHT = "print(1)"


@dataclass
class Recorder:
    """Stands where the project channel would: when each execution event was published."""

    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    done: dict[str, asyncio.Event] = field(default_factory=dict)

    async def publish(self, project_id: uuid.UUID, event: dict[str, Any]) -> None:
        run = str(event.get("execution_id", ""))
        self.seen.setdefault((str(event["type"]), run), time.monotonic())
        if event["type"] == "execution.finished":
            self.done.setdefault(run, asyncio.Event()).set()

    async def finished(self, run: str) -> None:
        await self.done.setdefault(run, asyncio.Event()).wait()


@dataclass
class Tenant:
    user: uuid.UUID
    project: uuid.UUID


async def tenants(db: Database) -> tuple[Tenant, Tenant]:
    made = []
    async with db.service() as conn:
        for _ in range(2):
            user = await factories.create_user(conn)
            project = await factories.create_project(
                conn, await factories.create_workspace(conn, user)
            )
            made.append(Tenant(user, project))
    return made[0], made[1]


async def submit(hub: ExecutionHub, who: Tenant, source: str, limits: RunLimits) -> str:
    row = await hub.submit(user_id=who.user, project_id=who.project, language="python",
                           source=source, file_id=None, stdin="", limits=limits)
    return str(row["id"])


async def one_round(policy: str, config: ExecutionConfig, db: Database, args: argparse.Namespace,
                    flood: Tenant, light: Tenant) -> dict[str, Any]:
    recorder = Recorder()
    hub = ExecutionHub(replace(config, run_queue=policy), db, projects=recorder)
    await hub.start()
    try:
        # Toolchain detection and a first run happen before anything is measured.
        await recorder.finished(await submit(hub, light, LIGHT, RunLimits()))
        stop = asyncio.Event()
        flooded = 0

        async def keep_flooding() -> None:
            nonlocal flooded
            source = FLOODS[args.flood_kind]
            running = {await submit(hub, flood, source, FLOOD_LIMITS) for _ in range(args.flood)}
            flooded += len(running)
            while not stop.is_set():
                waits = {asyncio.ensure_future(recorder.finished(r)): r for r in running}
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                for task in done:
                    running.discard(waits[task])
                    if not stop.is_set():
                        running.add(await submit(hub, flood, source, FLOOD_LIMITS))
                        flooded += 1

        flooder = asyncio.create_task(keep_flooding())
        await asyncio.sleep(1.0)  # the flood fills every slot and the queue first
        submitted: dict[str, float] = {}
        deadline = time.monotonic() + args.window
        while time.monotonic() < deadline:
            at = time.monotonic()
            submitted[await submit(hub, light, LIGHT, RunLimits())] = at
            await asyncio.sleep(args.every * random.uniform(0.8, 1.2))
        await asyncio.wait_for(
            asyncio.gather(*(recorder.finished(r) for r in submitted)), 120
        )
        stop.set()
        flooder.cancel()
        await asyncio.gather(flooder, return_exceptions=True)
    finally:
        await hub.close()
    waits = [(recorder.seen[("execution.started", r)] - at) * 1000 for r, at in submitted.items()]
    totals = [(recorder.seen[("execution.finished", r)] - at) * 1000
              for r, at in submitted.items()]
    return {"policy": policy, "light_runs": len(submitted), "flood_runs": flooded,
            "wait_ms": waits, "total_ms": totals}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for policy in ("fifo", "fair"):
        mine = [r for r in rounds if r["policy"] == policy]
        waits = [w for r in mine for w in r["wait_ms"]]
        totals = [t for r in mine for t in r["total_ms"]]
        out[policy] = {
            "light_runs": len(waits),
            "flood_runs": sum(r["flood_runs"] for r in mine),
            "wait_p50": statistics.median(waits), "wait_p95": pct(waits, 0.95),
            "wait_max": max(waits), "total_p50": statistics.median(totals),
            "total_p95": pct(totals, 0.95),
        }
    return out


def render(result: dict[str, Any]) -> str:
    rows = result["summary"]
    args = result["args"]
    lines = [
        START,
        "## Run queue (bench/fair_queue.py)",
        "",
        f"Tenant F keeps {args['flood']} {args['flood_kind']} runs submitted "
        f"(`{FLOODS[args['flood_kind']].splitlines()[-1]}`, 3 s limits, each replaced when it "
        f"ends); tenant L, in another workspace, submits `{LIGHT}` every ~{args['every']:g} s "
        f"for {args['window']:g} s. One hub, the local sandbox, 8 slots; the fair queue with "
        "4 runs per user and per project. Wait = submit -> `execution.started`; total = "
        "submit -> `execution.finished`. Policies interleaved in one run, "
        f"{args['repeat']} round(s) each.",
        "",
        "| policy | light runs | flood runs | wait p50 ms | **wait p95 ms** | wait max ms "
        "| total p50 ms | total p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"fifo": "old global FIFO", "fair": "**fair queue**"}
    for policy in ("fifo", "fair"):
        r = rows[policy]
        lines.append(
            f"| {names[policy]} | {r['light_runs']:.0f} | {r['flood_runs']:.0f} "
            f"| {r['wait_p50']:.0f} | **{r['wait_p95']:.0f}** | {r['wait_max']:.0f} "
            f"| {r['total_p50']:.0f} | {r['total_p95']:.0f} |"
        )
    lines += [
        "",
        f"Measured {result['measured_at']} on {result['cpus']} CPUs, 1-minute load average "
        f"{result['load_average_1m']} at the start (the machine is shared with other work). "
        "The fair queue's wait is the time to a free slot: the flood holds 4 of 8 slots, so a "
        "light run starts at once; its total is then its own run on a CPU shared with the "
        "flood's loops. Under the FIFO it waits behind every queued loop (with the default "
        "10 s limits instead of 3 s, about three times as long). The price: the flooder's "
        "own throughput (flood runs) is lower, since the per-user cap (4) holds its runs "
        "back even while slots are free; `EXECUTION_MAX_PER_USER` trades one for the other. "
        "Command: `.venv/bin/python bench/fair_queue.py` (about 1 min).",
        END,
    ]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    replace_section(README, START, END, block)


async def database() -> tuple[str, Any]:
    """A fresh migrated database and what to call to drop it."""
    base = os.environ.get("DATABASE_URL")
    if base:
        import asyncpg

        name = f"bench_fair_queue_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(base)
        await admin.execute(f'create database "{name}"')
        await admin.close()

        async def drop() -> None:
            admin = await asyncpg.connect(base)
            await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.close()

        dsn = dsn_with_database(base, name)
    else:
        from persistence.embedded import start_embedded_postgres

        work = Path(tempfile.mkdtemp(prefix="fair-queue-pg-"))
        dsn, pg = start_embedded_postgres(work / "pg", cleanup="delete")

        async def drop() -> None:
            pg.cleanup()
            shutil.rmtree(work, ignore_errors=True)

    await migrate_dsn(dsn)
    return dsn, drop


async def main(args: argparse.Namespace) -> dict[str, Any]:
    load = round(os.getloadavg()[0], 1)
    dsn, drop = await database()
    root = Path(tempfile.mkdtemp(prefix="fair-queue-"))
    root.chmod(0o711)  # the sandbox uid traverses it to the workdirs
    db = await Database.connect(dsn, min_size=2, max_size=10)
    rounds = []
    try:
        flood, light = await tenants(db)
        config = ExecutionConfig(workdir_root=root / "workspaces", storage_root=root / "storage")
        for _ in range(args.repeat):
            for policy in ("fifo", "fair"):
                result = await one_round(policy, config, db, args, flood, light)
                print(json.dumps({"policy": policy, "light_runs": result["light_runs"],
                                  "wait_p95": pct(result["wait_ms"], 0.95)}), flush=True)
                rounds.append(result)
    finally:
        await db.close()
        await drop()
        shutil.rmtree(root, ignore_errors=True)
    return {"args": vars(args), "rounds": rounds, "summary": summary(rounds),
            "load_average_1m": load, "cpus": os.cpu_count(),
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=16)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--flood-kind", choices=sorted(FLOODS), default="busy")
    parser.add_argument("--no-readme", action="store_true")
    options = parser.parse_args()
    outcome = asyncio.run(main(options))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fair-queue-latest.json").write_text(json.dumps(outcome, indent=1))
    print(json.dumps(outcome["summary"], indent=1))
    if not options.no_readme:
        write_readme(render(outcome))
