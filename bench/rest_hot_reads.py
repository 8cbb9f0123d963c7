"""The REST hot reads under RLS against their floor: file content, tree listing, project open.

    .venv/bin/python bench/rest_hot_reads.py [--rounds 3] [--duration 5] [--clients 10,200]
                                             [--reads file,tree,project] [--no-readme]
                                             [--profile DIR]

One run starts one PostgreSQL (``DATABASE_URL`` if set: a fresh database on it, dropped at
the end; else an embedded one, pinned with the apps), one migrated database with a user, a
workspace, a project and ``--files`` files of ``--file-bytes`` each, our app
(``python -m server serve``, ``API_LOGS=1``) and the floor (bench/rest_floor.py: a bare
Starlette route running the same SQL under the same RLS settings on the same pool). Both
apps and PostgreSQL are pinned to core 0, ``wrk`` (one thread, closed loop, ``--latency``)
to core 1; traffic is 127.0.0.1. For each read and client count, each round measures both
apps one after the other in alternating order, each after a warm-up. Reported: the median
over rounds of requests/s, p50 and p99 of each, ours ÷ floor, and the spread of the
per-round ratios (the noise of the shared machine).

Reads: ``file`` GET /api/v1/files/{id} (content included), ``tree`` GET
/api/v1/projects/{id}/files (one page of 50), ``project`` GET /api/v1/projects/{id}
(records last_accessed_at, then reads the project).

Results: bench/results/rest-hot-reads-latest.json and a section of bench/README.md.
``--profile DIR``: after the rounds, one more run of ours per read at the highest client
count under py-spy (``bench/pyspy.py``; its figures are not used), summaries in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import pyspy  # noqa: E402
from api_logs import LOADGEN_CORE, WRK_REPORT, start_app, wrk  # noqa: E402
from procs import Pinned, cpu_seconds, free_port, wait_http_ok  # noqa: E402
from targets import SERVER_CORE, Database  # noqa: E402

RESULTS = BENCH / "results" / "rest-hot-reads-latest.json"
README = BENCH / "README.md"
START = "<!-- rest-hot-reads:start -->"
END = "<!-- rest-hot-reads:end -->"
ARMS = ("ours", "floor")
READS = {
    "file": ("GET /api/v1/files/{id}", "/api/v1/files/{file}"),
    "tree": ("GET /api/v1/projects/{id}/files", "/api/v1/projects/{project}/files"),
    "project": ("GET /api/v1/projects/{id}", "/api/v1/projects/{project}"),
}
INSERT_FILES = """
insert into public.files (project_id, path, name, type, content, size_bytes, created_by, updated_by)
select $1, 'src/' || n || '.py', n || '.py', 'file', $3, octet_length($3), $2, $2
from unnest($4::text[]) as n
returning id
"""


def add_files(db: Database, count: int, size: int) -> str:
    """``count`` files of ``size`` bytes of Python-looking text; the first one's id."""

    async def create() -> str:
        import asyncpg

        line = "def handler(request):  # a line of about sixty bytes of code\n"
        content = (line * (size // len(line) + 1))[:size]
        conn = await asyncpg.connect(db.dsn)
        try:
            names = [f"module_{i:04d}" for i in range(count)]
            rows = await conn.fetch(INSERT_FILES, db.project_id, db.user_id, content, names)
        finally:
            await conn.close()
        return str(rows[0]["id"])

    return asyncio.run(create())


def start_floor(db: Database, work: Path) -> tuple[Pinned, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db.dsn}
    cmd = [sys.executable, str(BENCH / "rest_floor.py"), "--port", str(port),
           "--user", str(db.user_id),
           "--pool-min", os.environ.get("DB_POOL_MIN", "2"),
           "--pool-max", os.environ.get("DB_POOL_MAX", "10")]
    app = Pinned("floor", cmd, SERVER_CORE, work / "floor.log", env, REPO).start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(url + "/healthz", 60, app.proc)
    return app, url


def measure(app: Pinned, db: Database, url: str, token: str, clients: int,
            args: argparse.Namespace, script: Path) -> dict[str, Any]:
    wrk(url, token, args.warmup, clients, script)
    app_cpu, db_cpu = cpu_seconds(app.pid), sum(cpu_seconds(p) for p in db.db_pids())
    report = wrk(url, token, args.duration, clients, script)
    app_cpu = cpu_seconds(app.pid) - app_cpu
    db_cpu = sum(cpu_seconds(p) for p in db.db_pids()) - db_cpu
    requests = max(report["requests"], 1)
    return {
        "app_cpu_us": app_cpu / requests * 1e6,
        "db_cpu_us": db_cpu / requests * 1e6 if db.db_pids() else None,
        "requests": report["requests"],
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "p50_ms": report["p50_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
        "errors": report["errors"],
        "non2xx": report["non2xx"],
    }


def profile(app: Pinned, url: str, token: str, clients: int, args: argparse.Namespace,
            script: Path, out: Path) -> None:
    """One run of ``url`` with py-spy sampling ``app``; its summary written to ``out``."""
    raw = out.with_suffix(".raw")
    spy = pyspy.start(app.pid, args.duration, raw, LOADGEN_CORE)
    if spy is None:
        print("py-spy is not installed: no profile", file=sys.stderr)
        return
    wrk(url, token, args.duration, clients, script)
    spy.wait(timeout=args.duration + 30)
    out.write_text(pyspy.summarize(raw))
    print(f"profile: {out}", flush=True)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for read in dict.fromkeys(r["read"] for r in runs):
        for clients in dict.fromkeys(r["clients"] for r in runs if r["read"] == read):
            mine = [r for r in runs if r["read"] == read and r["clients"] == clients]
            row: dict[str, Any] = {"read": read, "clients": clients}
            for arm in ARMS:
                arm_runs = [r for r in mine if r["arm"] == arm]
                for key in ("rps", "p50_ms", "p99_ms"):
                    row[f"{arm}_{key}"] = statistics.median(r[key] for r in arm_runs)
            for arm in ARMS:
                # CPU per request of the app and PostgreSQL together: steadier than latency
                # on a shared machine (what one request costs, not how long it waited).
                row[f"{arm}_cpu_us"] = statistics.median(
                    r["app_cpu_us"] + (r["db_cpu_us"] or 0) for r in mine if r["arm"] == arm)
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us"):
                per_round = []
                for round_no in sorted({r["round"] for r in mine}):
                    pair = {r["arm"]: r["app_cpu_us"] + (r["db_cpu_us"] or 0) if key == "cpu_us"
                            else r[key] for r in mine if r["round"] == round_no}
                    if pair.get("floor"):
                        per_round.append(pair["ours"] / pair["floor"])
                row[f"ratio_{key}"] = row[f"ours_{key}"] / row[f"floor_{key}"]
                row[f"ratio_{key}_range"] = [min(per_round), max(per_round)]
            row["non2xx"] = sum(r["non2xx"] + r["errors"] for r in mine)
            rows.append(row)
    return rows


def render(report: dict[str, Any]) -> str:
    lines = [
        START,
        "## REST hot reads against their floor (bench/rest_hot_reads.py)",
        "",
        f"Run {report['started']} at commit {report['commit']}, {report['rounds']} rounds × "
        f"{report['duration_s']:g} s per app (after {report['warmup_s']:g} s warm-up), `wrk` "
        f"closed loop on core 1, apps and PostgreSQL on core 0, api_logs on; "
        f"{report['files']} files of {report['file_bytes']:,} bytes; load average at start "
        f"{report['load_average']}, at the end {report.get('load_average_end')}. Floor: "
        "bench/rest_floor.py, the same SQL under the same RLS settings (`Database.as_user`) "
        "on the same pool, nothing else. Medians over "
        "rounds; ours ÷ floor with [min–max] of the per-round ratios (the machine is shared). "
        "Targets at 200 clients: latency ≤ 1.3×, requests/s ≥ 0.8×. CPU: the app's and "
        "PostgreSQL's per request, added.",
        "",
        "| read | clients | ours req/s | floor req/s | req/s ÷ | ours p50 ms | floor p50 ms "
        "| p50 ÷ | ours p99 ms | floor p99 ms | p99 ÷ | CPU µs/req ours | floor | CPU ÷ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(row: dict[str, Any], key: str) -> str:
        low, high = row[f"ratio_{key}_range"]
        return f"{row[f'ratio_{key}']:.2f} [{low:.2f}–{high:.2f}]"

    for row in report["summary"]:
        lines.append(
            f"| {READS[row['read']][0]} | {row['clients']} | {row['ours_rps']:,.0f} "
            f"| {row['floor_rps']:,.0f} | {ratio(row, 'rps')} | {row['ours_p50_ms']:.1f} "
            f"| {row['floor_p50_ms']:.1f} | {ratio(row, 'p50_ms')} | {row['ours_p99_ms']:.1f} "
            f"| {row['floor_p99_ms']:.1f} | {ratio(row, 'p99_ms')} "
            f"| {row['ours_cpu_us']:,.0f} | {row['floor_cpu_us']:,.0f} | {ratio(row, 'cpu_us')} |"
        )
    bad = sum(row["non2xx"] for row in report["summary"])
    lines += ["", f"Non-2xx answers and socket errors over the run: {bad}.", END]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def git_commit() -> str:
    import subprocess

    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                          capture_output=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--clients", default="10,200")
    parser.add_argument("--reads", default=",".join(READS))
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--file-bytes", type=int, default=4096)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--profile", type=Path, help="write py-spy summaries of ours here")
    parser.add_argument("--render", type=Path,
                        help="only re-render the table of a results file (no measuring)")
    args = parser.parse_args()
    if args.render is not None:
        report = json.loads(args.render.read_text())
        report["summary"] = summarize(report["runs"])
        block = render(report)
        print(block)
        if not args.no_readme:
            write_readme(block)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    reads = [r for r in args.reads.split(",") if r]
    unknown = set(reads) - set(READS)
    if unknown:
        parser.error(f"unknown reads: {', '.join(sorted(unknown))}")
    client_counts = [int(c) for c in args.clients.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench-rest-hot-"))
    script = work / "report.lua"
    script.write_text(WRK_REPORT)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = [round(x, 2) for x in os.getloadavg()]
    db = Database(work)
    apps: dict[str, tuple[Pinned, str]] = {}
    try:
        file_id = add_files(db, args.files, args.file_bytes)
        token = db.token()
        apps["ours"] = start_app("on", db, work)
        apps["floor"] = start_floor(db, work)
        runs: list[dict[str, Any]] = []
        for read in reads:
            path = READS[read][1].format(file=file_id, project=db.project_id)
            for clients in client_counts:
                for index in range(args.rounds):
                    order = ARMS if index % 2 == 0 else tuple(reversed(ARMS))
                    for arm in order:
                        app, url = apps[arm]
                        result = measure(app, db, url + path, token, clients, args, script)
                        result.update(read=read, clients=clients, arm=arm, round=index + 1)
                        runs.append(result)
                        print(f"{read:>7} c={clients:<3} round {index + 1} {arm:>5}: "
                              f"{result['rps']:7.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
                              f"p99 {result['p99_ms']:7.2f} ms  "
                              f"app CPU {result['app_cpu_us']:5.0f} µs/req  "
                              f"non-2xx {result['non2xx']}",
                              flush=True)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for read in reads:
                path = READS[read][1].format(file=file_id, project=db.project_id)
                app, url = apps["ours"]
                profile(app, url + path, token, max(client_counts), args, script,
                        args.profile / f"{read}.txt")
        report = {
            "started": started, "commit": git_commit(), "load_average": load,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
            "files": args.files, "file_bytes": args.file_bytes, "file_id": file_id,
            "runs": runs, "summary": summarize(runs),
        }
    finally:
        for app, _ in apps.values():
            app.stop()
        db.close()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    block = render(report)
    print(block)
    if not args.no_readme:
        write_readme(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
