"""AI relay benchmark: what the chat hub adds between the provider's stream and the watchers.

    .venv/bin/python bench/ai_relay.py [--watchers 1,10,50] [--deltas 200] [--interval-ms 10]
                                       [--repeat 3] [--targets app,floor] [--profile]
                                       [--no-readme]

One run starts an embedded PostgreSQL, the fake provider (``ai_relay_provider.py``: one
ticker writes each delta, stamped with its send time, to every open stream) and the app
(``python -m server serve``) pointed at it. The app and its PostgreSQL are pinned to core 0;
the provider, the client and this process to core 1. Each round, one client process
(``ai_relay_client.py``) holds W watcher sockets of one conversation and a raw stream read
straight from the provider; it asks both at the same instant. Receive times are the kernel's
(``SO_TIMESTAMPNS``), so the client's own scheduling does not count. Because raw and relayed
streams carry the same deltas, the relay's overhead is taken per delta: watcher receive time
minus raw receive time of the same delta.

The same rounds run against a floor (``ai_relay_floor.py``: a bare uvloop relay, no
framework, no database, pinned like the app), interleaved with the app's: what this machine
charges for one more process hop, against which the app's overhead can be read.

Results: bench/results/ai-relay-latest.json and a section of bench/README.md (not with
``--profile``, which samples the server with py-spy each round and writes
bench/results/profile-ai-relay-W.txt instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import pyspy  # noqa: E402
from procs import (  # noqa: E402
    PRIORITY,
    Pinned,
    children,
    cpu_seconds,
    pin,
    pinned_cmd,
    prioritize,
    wait_http_ok,
    wait_tcp,
)
from report import replace_section  # noqa: E402

from persistence.db import Database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from server.auth.tokens import issue_access_token  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.servers import server_env  # noqa: E402

RESULTS = BENCH / "results"
README = BENCH / "README.md"
START, END = "<!-- ai-relay:start -->", "<!-- ai-relay:end -->"
SECRET = "bench-secret-0123456789-0123456789-0123456789"
SERVER_CORE, CLIENT_CORE = 0, 1
IDLE_WINDOW_S = 3.0
LABELS = {"app": "**app**", "floor": "bare relay"}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rate(times_ns: list[int]) -> float:
    if len(times_ns) < 2:
        return float("nan")
    span = (max(times_ns) - min(times_ns)) / 1e9
    return (len(times_ns) - 1) / span if span else float("nan")


def analyse(out: dict[str, Any], deltas: int) -> dict[str, Any]:
    """Latencies, per-delta overhead, first delta and rates from one client's report."""
    raw = {send: received for send, received in out["raw"]}
    watchers = out["watchers"]
    last_relayed = max((p[0] for w in watchers for p in w["pairs"]), default=0)
    raw_in_window = [(s, r) for s, r in out["raw"] if s <= last_relayed]
    relay_lat: list[float] = []
    overhead: list[float] = []
    unmatched = 0
    for watcher in watchers:
        for send, received in watcher["pairs"]:
            relay_lat.append((received - send) / 1e6)
            if send in raw:
                overhead.append((received - raw[send]) / 1e6)
            else:
                unmatched += 1
    matched = {s for w in watchers for s, _ in w["pairs"] if s in raw}
    raw_lat = [(raw[s] - s) / 1e6 for s in matched]
    firsts = [(w["pairs"][0][1] - out["relay_asked_ns"]) / 1e6 for w in watchers if w["pairs"]]
    counts = [len(w["pairs"]) for w in watchers]
    frames = sum(w["frames"] for w in watchers)
    return {
        "watchers": len(watchers),
        "incomplete_watchers": sum(1 for w in watchers if not w["done"] or w["failed"]),
        "deltas_per_watcher_min": min(counts, default=0),
        "deltas_expected": deltas,
        "delivered": sum(counts),
        "delta_frames_per_delta": frames / sum(counts) if sum(counts) else float("nan"),
        "unmatched": unmatched,
        "raw": {
            "first_delta_ms": (out["raw"][0][1] - out["raw_asked_ns"]) / 1e6
            if out["raw"] else float("nan"),
            "deltas_per_s": rate([r for _, r in raw_in_window]),
            "p50_ms": pct(raw_lat, 50), "p99_ms": pct(raw_lat, 99),
        },
        "relay": {
            "first_delta_ms": statistics.median(firsts) if firsts else float("nan"),
            "first_delta_max_ms": max(firsts, default=float("nan")),
            "deltas_per_s": statistics.median(
                rate([r for _, r in w["pairs"]]) for w in watchers) if watchers else 0.0,
            "p50_ms": pct(relay_lat, 50), "p99_ms": pct(relay_lat, 99),
        },
        "overhead_p50_ms": pct(overhead, 50),
        "overhead_p99_ms": pct(overhead, 99),
        "overhead_max_ms": max(overhead, default=float("nan")),
        "samples": {"overhead": overhead, "relay": relay_lat, "raw": raw_lat},
    }


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a target's rounds: percentiles over every round's deltas together
    (a single 200-delta round's p99 is its second worst delta), medians of the rest."""
    samples = {k: [v for r in results for v in r["samples"][k]] for k in ("overhead", "relay",
                                                                          "raw")}
    for r in results:
        del r["samples"]

    def median(*path: str) -> float:
        values = []
        for r in results:
            value: Any = r
            for key in path:
                value = value[key]
            values.append(value)
        return float(statistics.median(values))

    return {
        "target": results[0]["target"],
        "watchers": results[0]["watchers"],
        "rounds": len(results),
        "delivered": sum(r["delivered"] for r in results),
        "incomplete_watchers": sum(r["incomplete_watchers"] for r in results),
        "delta_frames_per_delta": median("delta_frames_per_delta"),
        "raw": {"first_delta_ms": median("raw", "first_delta_ms"),
                "deltas_per_s": median("raw", "deltas_per_s"),
                "p50_ms": pct(samples["raw"], 50), "p99_ms": pct(samples["raw"], 99)},
        "relay": {"first_delta_ms": median("relay", "first_delta_ms"),
                  "deltas_per_s": median("relay", "deltas_per_s"),
                  "p50_ms": pct(samples["relay"], 50), "p99_ms": pct(samples["relay"], 99)},
        "overhead_p50_ms": pct(samples["overhead"], 50),
        "overhead_p99_ms": pct(samples["overhead"], 99),
        "overhead_max_ms": max(samples["overhead"], default=float("nan")),
        "server_cpu_us_per_delivered_delta": median("server_cpu_us_per_delivered_delta"),
        "all_overhead_p99_ms": [r["overhead_p99_ms"] for r in results],
        "all_rounds": results,
    }


class Bench:
    """The processes of one run: PostgreSQL and the app on core 0, the provider on core 1."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.pg: Any = None
        self.postmaster: int | None = None
        self.provider: Pinned | None = None
        self.server: Pinned | None = None
        self.floor: Pinned | None = None

    def start(self) -> None:
        from persistence.embedded import start_embedded_postgres

        dsn, self.pg = start_embedded_postgres(self.work / "pg", cleanup="delete")
        pid_file = self.work / "pg" / "postmaster.pid"
        if pid_file.exists():
            self.postmaster = int(pid_file.read_text().split()[0])
            pin([self.postmaster, *children(self.postmaster)], SERVER_CORE)
        self.conversation, users = asyncio.run(setup_database(dsn, max(self.args.counts)))
        self.tokens = [issue_access_token(SECRET, str(u), None) for u in users]
        provider_port = free_port()
        self.provider_url = f"http://127.0.0.1:{provider_port}"
        self.provider = Pinned(
            "provider",
            [sys.executable, str(BENCH / "ai_relay_provider.py"), str(provider_port),
             "--deltas", str(self.args.deltas), "--interval-ms", str(self.args.interval_ms)],
            CLIENT_CORE, self.work / "provider.log",
        ).start()
        wait_tcp(provider_port, 30, self.provider.proc)
        settings = Settings(database_url=dsn, jwt_secret=SECRET, data_dir=self.work / "data")
        env = server_env(settings, {"AI_BASE_URL": self.provider_url, "AI_MODEL": "bench",
                                    "AI_API_KEY": "bench", "LOG_LEVEL": "warning"})
        port = free_port()
        self.ws_url = f"ws://127.0.0.1:{port}"
        self.server = Pinned(
            "server", [sys.executable, "-m", "server", "serve", "--port", str(port)],
            SERVER_CORE, self.work / "server.log", env=env, cwd=REPO,
        ).start()
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, self.server.proc)
        floor_port = free_port()
        self.floor_url = f"ws://127.0.0.1:{floor_port}"
        self.floor = Pinned(
            "floor", [sys.executable, str(BENCH / "ai_relay_floor.py"), str(floor_port),
                      self.provider_url],
            SERVER_CORE, self.work / "floor.log",
        ).start()
        wait_tcp(floor_port, 30, self.floor.proc)
        # The app's CPU while nobody streams (keepalives, maintenance), over a fixed window:
        # subtracted from each round's CPU so the figure per delta is the relay's own.
        before = cpu_seconds(self.server.pid)
        time.sleep(IDLE_WINDOW_S)
        self.idle_cpu_per_s = (cpu_seconds(self.server.pid) - before) / IDLE_WINDOW_S

    def db_cpu(self) -> float:
        if self.postmaster is None:
            return 0.0
        return sum(cpu_seconds(p) for p in [self.postmaster, *children(self.postmaster)])

    def round(self, target: str, count: int, profile: Path | None) -> dict[str, Any]:
        assert self.server is not None and self.floor is not None
        relay, ws_url = (self.server, self.ws_url) if target == "app" else \
            (self.floor, self.floor_url)
        cmd = [sys.executable, str(BENCH / "ai_relay_client.py"), ws_url,
               self.provider_url, str(self.conversation), ",".join(self.tokens[:count]),
               str(self.args.deltas)]
        client = subprocess.Popen(pinned_cmd(cmd, CLIENT_CORE), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        prioritize(client.pid)
        assert client.stdin is not None and client.stdout is not None
        if client.stdout.readline().strip() != "ready":
            client.kill()
            raise RuntimeError("the client did not connect")
        seconds = self.args.deltas * self.args.interval_ms / 1000 + 1
        spy = None if profile is None else pyspy.start(relay.pid, seconds, profile, CLIENT_CORE)
        server_before, db_before, started = cpu_seconds(relay.pid), self.db_cpu(), \
            time.monotonic()
        client.stdin.write("go\n")
        client.stdin.flush()
        output, _ = client.communicate(timeout=120 + seconds)
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(relay.pid) - server_before
        db_cpu = self.db_cpu() - db_before
        if spy is not None:
            spy.wait(30)
        result = analyse(json.loads(output), self.args.deltas)
        if target == "app":
            # Less what the idle app burns anyway (other hubs' timers) during the round.
            server_cpu -= self.idle_cpu_per_s * elapsed
        delivered = result["delivered"]
        result.update(
            target=target, server_cpu_s=server_cpu, db_cpu_s=db_cpu,
            server_cpu_us_per_delivered_delta=server_cpu / delivered * 1e6 if delivered
            else None,
        )
        return result

    def stop(self) -> None:
        for proc in (self.server, self.floor, self.provider):
            if proc is not None:
                proc.stop()
        if self.pg is not None:
            self.pg.cleanup()


async def setup_database(dsn: str, people: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await migrate_dsn(dsn)
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.service() as conn:
            owner = await factories.create_user(conn)
            workspace = await factories.create_workspace(conn, owner)
            users = [owner]
            for _ in range(people - 1):
                user = await factories.create_user(conn)
                await factories.add_member(conn, workspace, user, "viewer")
                users.append(user)
            project = await factories.create_project(conn, workspace)
            conversation = await factories.create_conversation(conn, project, owner, "bench")
            # Unlimited allowance for the bench user: a plan without an ai_tokens limit.
            await conn.execute(
                "update public.subscription_plans set limits = limits - 'ai_tokens' "
                "where slug = 'free'")
    finally:
        await db.close()
    return conversation, users


def render(results: dict[str, Any]) -> str:
    lines = [
        START,
        "## AI relay (bench/ai_relay.py)",
        "",
        f"{results['deltas']} deltas, one every {results['interval_ms']} ms, from a fake "
        "provider that writes each delta (stamped with its send time) to the raw stream and "
        "to the app's stream at once. The app and its PostgreSQL on core 0; provider and "
        "client on core 1; one client process holds every watcher socket and the raw stream "
        "and takes receive times from the kernel (`SO_TIMESTAMPNS`). Latency = receive - "
        "send time; **overhead = watcher receive - raw receive of the same delta**. "
        f"{results['repeat']} rounds per watcher count and relay, interleaved; latency "
        "percentiles over the deltas of all rounds together, the rest medians of the rounds "
        f"(niceness {results['nice']}).",
        "",
        "| watchers | relay | first delta ms raw / relay | deltas/s raw / relay "
        "| raw latency p50 / p99 ms | relay latency p50 / p99 ms "
        "| overhead p50 / p99 / max ms | frames per delta | server CPU µs per delivered delta "
        "| p99 overhead of each round ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rounds"]:
        lines.append(
            f"| {r['watchers']} | {LABELS[r['target']]} | {r['raw']['first_delta_ms']:.1f} / "
            f"{r['relay']['first_delta_ms']:.1f} | {r['raw']['deltas_per_s']:.0f} / "
            f"{r['relay']['deltas_per_s']:.0f} | {r['raw']['p50_ms']:.2f} / "
            f"{r['raw']['p99_ms']:.2f} | {r['relay']['p50_ms']:.2f} / "
            f"{r['relay']['p99_ms']:.2f} | {r['overhead_p50_ms']:.2f} / "
            f"{r['overhead_p99_ms']:.2f} / {r['overhead_max_ms']:.2f} | "
            f"{r['delta_frames_per_delta']:.2f} | "
            f"{r['server_cpu_us_per_delivered_delta']:.0f} | "
            + ", ".join(f"{v:.2f}" for v in r["all_overhead_p99_ms"]) + " |"
        )
    lines += [
        "",
        f"Target: relay overhead < 5 ms at p99. Measured {results['measured_at']} on "
        f"{results['cpus']} CPUs, 1-minute load average {results['load_average_1m']} at the "
        f"start and {results['load_average_1m_end']} at the end, both cores "
        f"{results['machine_busy_pct']} % busy and {results['steal_pct']} % stolen by the "
        "hypervisor during the run (the machine is shared with other work). "
        f"Code: {results['code']}.",
        "Relay first delta includes the app's work before the provider call (plan allowance "
        "and history in one query, the job and messages in one statement); raw first delta "
        "is the provider answering directly. Frames per delta < 1 means deltas were merged "
        "for watchers that fell behind. Bare relay = `ai_relay_floor.py` (uvloop, no "
        "framework, no database), pinned like the app: the machine's own cost of one more "
        "process hop. CPU per delivered delta of the app is net of its idle CPU.",
        END,
    ]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    replace_section(README, START, END, block)


def cpu_times() -> list[int]:
    """The machine's ``cpu`` line of /proc/stat (user ... steal), in ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def code_version() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--", "server", "ai", "persistence", "sql")
    return f"{git('rev-parse', '--short', 'HEAD')} ({len(dirty.splitlines())} uncommitted files)"


def main(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {CLIENT_CORE})
    load = round(os.getloadavg()[0], 1)
    ticks_before = cpu_times()
    work = Path(tempfile.mkdtemp(prefix="ai-relay-"))
    bench = Bench(args, work)
    rounds = []
    try:
        bench.start()
        for count in args.counts:
            tries: dict[str, list[dict[str, Any]]] = {t: [] for t in args.target_list}
            # Interleaved, so that noise from other work lands on app and floor alike.
            for rep in range(args.repeat):
                for target in args.target_list:
                    profile = (RESULTS / f".profile-ai-relay-{target}-{count}-{rep}.raw"
                               if args.profile else None)
                    result = bench.round(target, count, profile)
                    print(json.dumps({k: v for k, v in result.items() if k != "samples"}),
                          flush=True)
                    tries[target].append(result)
            for target, results in tries.items():
                rounds.append(pooled(results))
                if args.profile:
                    write_profile(target, count, args.repeat)
    except BaseException:
        for proc in (bench.server, bench.floor, bench.provider):
            if proc is not None:
                print(f"--- {proc.name} log\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    ticks = [after - before for after, before in zip(cpu_times(), ticks_before, strict=True)]
    busy = sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait
    return {"deltas": args.deltas, "interval_ms": args.interval_ms, "rounds": rounds,
            "repeat": args.repeat, "nice": PRIORITY["nice"], "load_average_1m": load,
            "load_average_1m_end": round(os.getloadavg()[0], 1),
            "machine_busy_pct": round(100 * busy / max(1, sum(ticks)), 1),
            "steal_pct": round(100 * ticks[7] / max(1, sum(ticks)), 2),
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(), "code": code_version()}


def write_profile(target: str, count: int, repeat: int) -> None:
    raws = [RESULTS / f".profile-ai-relay-{target}-{count}-{rep}.raw" for rep in range(repeat)]
    merged = RESULTS / f".profile-ai-relay-{target}-{count}.raw"
    merged.write_text("".join(p.read_text() for p in raws if p.exists()))
    for path in raws:
        path.unlink(missing_ok=True)
    out = RESULTS / f"profile-ai-relay-{target}-{count}.txt"
    out.write_text(f"py-spy of the {target}, {count} watchers, {repeat} rounds\n"
                   + pyspy.summarize(merged))
    merged.unlink()
    print(f"profile: {out.relative_to(REPO)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", default="1,10,50")
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per watcher count; the median round is reported")
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                        help="niceness of measured processes (default -10 as root, else 0)")
    parser.add_argument("--targets", default="app,floor",
                        help="app (the server) and/or floor (a bare relay), interleaved")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the app in every round; no README table")
    parser.add_argument("--no-readme", action="store_true")
    parsed = parser.parse_args()
    parsed.counts = [int(c) for c in parsed.watchers.split(",")]
    parsed.target_list = [t for t in parsed.targets.split(",") if t]
    PRIORITY["nice"] = parsed.nice
    report = main(parsed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "ai-relay-profile.json" if parsed.profile else "ai-relay-latest.json"
    (RESULTS / name).write_text(json.dumps(report, indent=1))
    if not parsed.no_readme and not parsed.profile:
        write_readme(render(report))
    print(render(report))
