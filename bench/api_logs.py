"""REST latency and throughput with api_logs on vs off: what logging every request costs.

    .venv/bin/python bench/api_logs.py [--rounds 4] [--duration 10] [--connections 16]
                                       [--path /api/v1/projects/{project}] [--no-readme]

One run starts one PostgreSQL (``DATABASE_URL`` if set: a fresh database on it, dropped at the
end; else an embedded one), one migrated database with a user, a workspace and a project, and
two app processes (``python -m server serve``) that differ only in ``API_LOGS=1`` / ``0``. Both
apps and PostgreSQL are pinned to core 0, the load generator (``wrk``, Debian's package: a
process of its own, ``--latency`` percentiles, closed loop) to core 1; traffic is 127.0.0.1.
Each round measures both apps one after the other, in alternating order (on, off / off, on ...)
so slow drifts of the shared machine fall on both alike; every measurement follows a warm-up.
Reported per arm: the median over rounds of requests/s, p50 and p99 latency, and the server's
and PostgreSQL's CPU per request; and on ÷ off. The "on" app's api_logs rows are counted
after the run (every request written, none dropped).

Results: bench/results/api-logs-latest.json and a section of bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from procs import Pinned, cpu_seconds, free_port, pinned_cmd, wait_http_ok  # noqa: E402
from targets import JWT_SECRET, SERVER_CORE, Database  # noqa: E402

LOADGEN_CORE = 1
RESULTS = BENCH / "results" / "api-logs-latest.json"
README = BENCH / "README.md"
START = "<!-- api-logs:start -->"
END = "<!-- api-logs:end -->"
ARMS = ("on", "off")

# wrk prints this one JSON line when a run ends (percentiles in microseconds).
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def start_app(arm: str, db: Database, work: Path) -> tuple[Pinned, str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DATABASE_URL": db.dsn,
        "JWT_SECRET": JWT_SECRET,
        "DATA_DIR": str(work / f"data-{arm}"),
        "AI_EMBEDDED": "0",
        "LOG_LEVEL": "warning",
        "INSTANCE_ID": f"bench-{arm}",
        "API_LOGS": "1" if arm == "on" else "0",
    }
    cmd = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    app = Pinned(f"app-{arm}", cmd, SERVER_CORE, work / f"app-{arm}.log", env, REPO).start()
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(url + "/healthz", 90, app.proc)
    return app, url


def wrk(url: str, token: str, duration_s: float, connections: int, script: Path) -> dict[str, Any]:
    cmd = pinned_cmd([
        "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script),
        "-H", f"Authorization: Bearer {token}", url,
    ], LOADGEN_CORE)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=duration_s + 30).stdout
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def measure(
    arm: str, app: Pinned, base: str, path: str, token: str, db: Database,
    args: argparse.Namespace, script: Path,
) -> dict[str, Any]:
    warmup = wrk(base + path, token, args.warmup, args.connections, script)
    app_cpu, db_cpu = cpu_seconds(app.pid), sum(cpu_seconds(p) for p in db.db_pids())
    report = wrk(base + path, token, args.duration, args.connections, script)
    app_cpu = cpu_seconds(app.pid) - app_cpu
    db_cpu = sum(cpu_seconds(p) for p in db.db_pids()) - db_cpu
    requests = max(report["requests"], 1)
    return {
        "arm": arm,
        "requests": report["requests"],
        "warmup_requests": warmup["requests"],
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "p50_ms": report["p50_us"] / 1000,
        "p90_ms": report["p90_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
        "max_ms": report["max_us"] / 1000,
        "errors": report["errors"],
        "non2xx": report["non2xx"],
        "app_cpu_us_per_request": app_cpu / requests * 1e6,
        "db_cpu_us_per_request": db_cpu / requests * 1e6 if db.db_pids() else None,
    }


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name):
                return float(line.split()[-1])
    return 0.0


def count_logged(db: Database) -> int:
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(db.dsn)
        try:
            value: int = await conn.fetchval("select count(*) from public.api_logs")
            return value
        finally:
            await conn.close()

    return asyncio.run(count())


def per_row_costs(db: Database) -> dict[str, float]:
    """What one logged request costs off the request path, measured alone (best of 8
    batches of 1,000): the writer turning entries into rows, and PostgreSQL's COPY of them
    into the partitioned table (indexes and the user_id foreign key included)."""
    import asyncio
    import uuid as uuid_module

    import asyncpg

    from observability.api_log import Parsed
    from persistence.observability import copy_api_logs

    entry = (time.time(), str(db.user_id), uuid_module.uuid4(), "/api/v1/projects/{project_id}",
             "GET", 200, 3, "127.0.0.1", "wrk/4.1", 0, 300)

    def record_us() -> float:
        best = float("inf")
        for _ in range(8):
            parsed = Parsed()
            started = time.perf_counter()
            for _ in range(1000):
                parsed.record(entry)
            best = min(best, time.perf_counter() - started)
        return best * 1000  # µs per row

    async def copy_us() -> float:
        conn = await asyncpg.connect(db.dsn)
        try:
            records = [Parsed().record(entry)] * 1000
            best = float("inf")
            for _ in range(8):
                started = time.perf_counter()
                await copy_api_logs(conn, records)
                best = min(best, time.perf_counter() - started)
            await conn.execute("delete from public.api_logs where user_agent = 'wrk/4.1'")
            return best * 1000
        finally:
            await conn.close()

    return {"writer_us_per_row": record_us(), "copy_us_per_row": asyncio.run(copy_us())}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p90_ms", "p99_ms", "app_cpu_us_per_request",
            "db_cpu_us_per_request")
    arms: dict[str, dict[str, float | None]] = {}
    for arm in ARMS:
        mine = [r for r in rounds if r["arm"] == arm]
        arms[arm] = {
            key: (statistics.median(v for r in mine if (v := r[key]) is not None)
                  if any(r[key] is not None for r in mine) else None)
            for key in keys
        }
    ratio = {key: (arms["on"][key] / arms["off"][key]  # type: ignore[operator]
                   if arms["on"][key] and arms["off"][key] else None) for key in keys}
    return {"arms": arms, "on_over_off": ratio}


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    on, off, ratio = summary["arms"]["on"], summary["arms"]["off"], summary["on_over_off"]

    def fmt(value: float | None, digits: int = 2) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    rows = [
        ("requests/s", "rps", 0), ("p50 latency (ms)", "p50_ms", 2),
        ("p90 latency (ms)", "p90_ms", 2), ("p99 latency (ms)", "p99_ms", 2),
        ("app CPU per request (µs)", "app_cpu_us_per_request", 0),
        ("PostgreSQL CPU per request (µs)", "db_cpu_us_per_request", 0),
    ]
    lines = [
        START,
        "## REST with api_logs on vs off (bench/api_logs.py)",
        "",
        f"Run {report['started']}, {report['rounds']} rounds × {report['duration_s']:g} s per arm "
        f"(after {report['warmup_s']:g} s warm-up), `wrk` closed loop, "
        f"{report['connections']} connections, `GET {report['path']}` (token, membership "
        f"check, one RLS query); load average at start {report['load_average']}. Medians "
        "over rounds; the machine is shared, so read the ratio more than the absolute numbers.",
        "",
        "| metric | api_logs on | api_logs off | on ÷ off |",
        "|---|---|---|---|",
    ]
    for label, key, digits in rows:
        lines.append(f"| {label} | {fmt(on[key], digits)} | {fmt(off[key], digits)} "
                     f"| {fmt(ratio[key], 3)} |")
    per_row = report["per_row"]
    lines += [
        "",
        "Measured alone, off the request path, per logged request (best of 8 × 1,000): the "
        f"writer's conversion {per_row['writer_us_per_row']:.1f} µs, PostgreSQL's COPY into "
        f"the partitioned table {per_row['copy_us_per_row']:.1f} µs (wall time, indexes and "
        "foreign key included).",
    ]
    lines += [
        "",
        f"Rows written by the \"on\" app: {report['logged_rows']:,} of {report['on_requests']:,} "
        f"requests (warm-ups included; wrk does not count the requests in flight when it "
        f"stops); dropped: {report['dropped']:g}.",
        "",
        "Per round (arm order alternates):",
        "",
        "| round | arm | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['round']} | {r['arm']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
                     f"| {r['p99_ms']:.2f} |")
    lines.append(END)
    return "\n".join(lines)


def write_readme(block: str) -> None:
    text = README.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--path", default="/api/v1/projects/{project}")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-api-logs-"))
    script = work / "report.lua"
    script.write_text(WRK_REPORT)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = [round(x, 2) for x in os.getloadavg()]
    db = Database(work)
    apps: dict[str, tuple[Pinned, str]] = {}
    try:
        path = args.path.format(project=db.project_id)
        token = db.token()
        for arm in ARMS:
            apps[arm] = start_app(arm, db, work)
        runs: list[dict[str, Any]] = []
        for index in range(args.rounds):
            order = ARMS if index % 2 == 0 else tuple(reversed(ARMS))
            for arm in order:
                app, url = apps[arm]
                result = measure(arm, app, url, path, token, db, args, script)
                result["round"] = index + 1
                runs.append(result)
                print(f"round {index + 1} {arm:>3}: {result['rps']:8.0f} req/s  "
                      f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                      f"non-2xx {result['non2xx']}", flush=True)
        on_url = apps["on"][1]
        dropped = metric(on_url, 'icreate_api_logs_dropped_total{reason="buffer_full"}') \
            + metric(on_url, 'icreate_api_logs_dropped_total{reason="write_failed"}')
        apps["on"][0].stop(15)  # the final flush
        on_requests = sum(r["requests"] + r["warmup_requests"] for r in runs if r["arm"] == "on")
        costs = per_row_costs(db)
        report = {
            "per_row": costs,
            "started": started, "load_average": load, "rounds": args.rounds,
            "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "path": args.path, "runs": runs,
            "summary": summarize(runs), "logged_rows": count_logged(db),
            "on_requests": on_requests, "dropped": dropped,
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
