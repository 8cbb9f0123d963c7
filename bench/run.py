"""Document-sync benchmark: the same workload against ours and the peers, in one run.

    .venv/bin/python bench/run.py [--quick] [--targets ours,yws,...] [--scenarios edit20,...]

Each (scenario, target) starts the target fresh, pinned to core 0 (with its PostgreSQL and
Redis), and the Node load generator (real Yjs clients) pinned to core 1. Server CPU is read
from /proc/<pid>/stat at the load generator's measure_start/measure_end events. Results go to
bench/results/<mode>-<timestamp>.json (and <mode>-latest.json); the table into bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyspy
from procs import PRIORITY, Group, pinned_cmd, prioritize
from report import write_readme
from targets import (
    BENCH,
    CLUSTER,
    OURS,
    PEERS,
    PEERS_FULL_EXTRA,
    TRANSPORTS,
    Launcher,
    Running,
    Target,
)

LOADGEN_CORE = 1
PART = "server-"  # per-process groups (run_one's per_process): "server-0", "server-1"...
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # loadgen scenario
    docs: int
    params: dict[str, Any]
    cluster: bool = False  # also run against the cluster targets
    # The figure its target is stated in: repeats report the run with its median.
    judged_by: str = "p99"
    # Run only when named in --scenarios, and only against these target kinds (None: all).
    on_demand: bool = False
    kinds: frozenset[str] | None = None


def scenarios(quick: bool) -> list[Scenario]:
    measure = 8 if quick else 20
    return [
        Scenario("edit20", "edit", 20,
                 {"clientsPerDoc": 5, "rate": 5, "warmupS": 3, "durationS": measure}, True),
        Scenario("edit50", "edit", 50,
                 {"clientsPerDoc": 5, "rate": 5, "warmupS": 3, "durationS": measure}, True,
                 judged_by="cpu"),
        Scenario("idle", "idle", 100 if quick else 500,
                 {"connections": 1000 if quick else 5000, "idleS": 5 if quick else 30}),
        Scenario("simul", "simul", 5 if quick else 10, {"clientsPerRound": 5, "windowMs": 2000}),
        # Opened in batches as in "idle", then a restart and every client reconnecting at once.
        Scenario("storm", "storm", 100 if quick else 500,
                 {"connections": 1000 if quick else 5000, "resyncTimeoutS": 60},
                 judged_by="resync", on_demand=True, kinds=frozenset({"ours", "yws"})),
        Scenario("history", "history", 1,
                 {"edits": 20_000 if quick else 100_000, "fresh": 5 if quick else 7,
                  "ingestTimeoutS": 150}),
    ]


# The knee (issue 21): the edit workload at escalating numbers of documents; the knee of a
# target is the first load whose p99 is over KNEE_P99_MS. Run only when named (`knee`).
KNEE_DOCS = (50, 75, 100, 150)
KNEE_P99_MS = 100.0


def knee_scenarios(quick: bool) -> list[Scenario]:
    measure = 8 if quick else 15
    return [
        Scenario(f"knee{docs}", "edit", docs,
                 {"clientsPerDoc": 5, "rate": 5, "warmupS": 3, "durationS": measure})
        for docs in KNEE_DOCS
    ]


def knee(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per target: the documents of the first load with p99 over the bound (None: none)."""
    out: dict[str, Any] = {}
    for docs in KNEE_DOCS:
        for target, entry in results.get(f"knee{docs}", {}).items():
            p99 = (entry.get("latency_ms") or {}).get("p99")
            over = "error" in entry or not isinstance(p99, (int, float)) or p99 > KNEE_P99_MS
            out.setdefault(target, {"knee_docs": None, "p99_ms": {}})
            out[target]["p99_ms"][docs] = p99
            if over and out[target]["knee_docs"] is None:
                out[target]["knee_docs"] = docs
    return out


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def sample(groups: list[Group]) -> dict[str, dict[str, float]]:
    return {
        g.name: {"cpu_s": g.cpu(), "sys_s": g.system_cpu(), "rss": float(g.rss())}
        for g in groups
    }


def run_loadgen(
    running: Running,
    scenario: Scenario,
    work: Path,
    deadline_s: float,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    """Runs one load generator; returns its result plus server CPU/RSS around the window."""
    docs = running.make_docs(scenario.docs)
    spec = {
        "scenario": scenario.kind,
        "target": running.target,
        "docs": docs,
        "hardDeadlineS": deadline_s,
        **scenario.params,
    }
    spec_path = work / f"spec-{scenario.name}.json"
    spec_path.write_text(json.dumps(spec))
    samples: dict[str, dict[str, dict[str, float]]] = {"start_of_run": sample(running.groups)}
    profilers: list[subprocess.Popen[bytes]] = []
    marks: dict[str, float] = {}
    result: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    proc = subprocess.Popen(
        pinned_cmd(["node", "loadgen.mjs", str(spec_path)], LOADGEN_CORE),
        cwd=BENCH,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    prioritize(proc.pid)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            name = event.get("event")
            if name in {"baseline", "connected", "measure_start", "measure_end"}:
                samples[name] = sample(running.groups)
                marks[name] = time.monotonic()
            if name == "restart":
                # The storm's window opens when the restarted server is ready.
                answer = restart_for(running, proc)
                samples["measure_start"] = sample(running.groups)
                marks["measure_start"] = time.monotonic()
                assert proc.stdin is not None
                proc.stdin.write((json.dumps(answer) + "\n").encode())
                proc.stdin.flush()
                if profile_out is not None and "error" not in answer:
                    # The storm: the restarted process from ready until everyone is back.
                    pid = running.groups[0].pids()[0]
                    profiler = pyspy.start(pid, 20, profile_out, LOADGEN_CORE)
                continue
            if name == "measure_end" and scenario.kind == "storm":
                result["document_loads"] = read_metrics(running.metrics_urls)
            # Profiles cover the measured window of the edit scenarios and the connection storm
            # (5,000 joins) of the idle scenario.
            trigger = "baseline" if scenario.kind == "idle" else "measure_start"
            if name == trigger and profile_out is not None and scenario.kind != "storm":
                seconds = float(scenario.params.get("durationS") or 60)
                # Every server process: profile_out for the first, .N.raw for process N.
                for index, pid in enumerate(running.groups[0].pids()):
                    out = profile_out if index == 0 else profile_out.with_suffix(f".{index}.raw")
                    profiler = pyspy.start(pid, seconds, out, LOADGEN_CORE)
                    if profiler is not None:
                        profilers.append(profiler)
            elif name == "result":
                result = {**event, **result}
            else:
                events.append(event)
        proc.wait(deadline_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for profiler in profilers:
            try:
                profiler.wait(30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait(5)
    result["events"] = events
    result["server"] = measure(samples, marks, result)
    if scenario.kind == "storm" and "baseline" in samples and "connected" in samples:
        # The open phase (5,000 joins in batches) as its own window.
        opened = ("baseline", "connected")
        result["server_open"] = measure(
            {"measure_start": samples[opened[0]], "measure_end": samples[opened[1]]},
            {"measure_start": marks[opened[0]], "measure_end": marks[opened[1]]},
            {},
        )
    return result


def restart_for(running: Running, loadgen: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Restarts the target for the storm scenario; what the load generator is told."""
    if running.restart is None:
        return {"error": "this target cannot restart"}
    try:
        return running.restart()
    except (RuntimeError, TimeoutError, OSError) as exc:
        return {"error": str(exc)}


# Counters of ours read after the storm (collab/metrics.py, server/access_batch.py): every
# document load since the restart, the rooms loaded, access checks and the queries answering them.
STORM_METRICS = ("icreate_doc_loads_total", "icreate_doc_rooms_loaded",
                 "icreate_doc_access_checks_total", "icreate_doc_access_queries_total")


def read_metrics(urls: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in STORM_METRICS:
                found[name] = found.get(name, 0.0) + float(value)
    return found


def measure(
    samples: dict[str, dict[str, dict[str, float]]],
    marks: dict[str, float],
    result: dict[str, Any],
) -> dict[str, Any]:
    if "measure_start" not in samples or "measure_end" not in samples:
        return {}
    start, end = samples["measure_start"], samples["measure_end"]
    seconds = marks["measure_end"] - marks["measure_start"]
    out: dict[str, Any] = {"window_s": seconds}
    for group in end:
        cpu = end[group]["cpu_s"] - start[group]["cpu_s"]
        entry: dict[str, Any] = {
            "cpu_s": cpu,
            "sys_s": end[group]["sys_s"] - start[group]["sys_s"],
            "cpu_fraction": cpu / seconds if seconds else None,
            "rss_mb": end[group]["rss"] / 1e6,
        }
        delivered = result.get("delivered")
        if delivered:
            entry["cpu_us_per_delivered"] = cpu / delivered * 1e6
            entry["sys_us_per_delivered"] = entry["sys_s"] / delivered * 1e6
        if "baseline" in samples and result.get("clients"):
            clients = result["clients"]
            entry["rss_baseline_mb"] = samples["baseline"][group]["rss"] / 1e6
            entry["rss_kb_per_conn"] = (
                (end[group]["rss"] - samples["baseline"][group]["rss"]) / clients / 1e3
            )
            entry["cpu_ms_per_conn_per_s"] = cpu / seconds / clients * 1e3 if seconds else None
        out[group] = entry
    # The per-process groups are parts of "server": counted once.
    total = sum(end[g]["cpu_s"] - start[g]["cpu_s"] for g in end if not g.startswith(PART))
    out["all_cpu_s"] = total
    if result.get("delivered"):
        out["all_cpu_us_per_delivered"] = total / result["delivered"] * 1e6
    return out


def code_version() -> dict[str, Any]:
    """The commit measured, and how many files of ours differed from it (a shared tree)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=BENCH.parent, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "server", "collab", "persistence", "sql")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_server_files": len(dirty.splitlines())}


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def variant_target(spec: str) -> Target:
    """``NAME:K=V,K=V`` -> ours with those environment settings, as target ours-NAME."""
    name, _, settings = spec.partition(":")
    options = dict(item.split("=", 1) for item in settings.split(",") if item)
    if not name or not options:
        raise SystemExit(f"--variant {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
    return Target(f"ours-{name}", f"ours ({settings})", "ours", options=options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short windows, fewer connections")
    parser.add_argument("--targets", help="comma-separated target names (default: all)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite bench/README.md")
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                        help="niceness of measured processes (default -10 as root, else 0)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per (scenario, target), interleaved; the median run is kept")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:K=V[,K=V]",
                        help="also run ours as target ours-NAME with these environment\n"
                             "settings (an A/B in one interleaved run), e.g.\n"
                             "--variant nolog:DOC_LOG_FLUSH_MS=1000,DOC_COMPACT_AFTER_S=1000")
    parser.add_argument("--profile", action="store_true",
                        help="only profile ours (py-spy) under edit20, edit50, idle and storm;"
                             " no tables")
    args = parser.parse_args(argv)
    PRIORITY["nice"] = args.nice
    if args.profile:
        return run_profiles(args.quick, args.targets, args.scenarios)

    raise_nofile()
    mode = "quick" if args.quick else "full"
    variants = [variant_target(spec) for spec in args.variant]
    singles: list[Target] = [
        OURS, *variants, *PEERS, *([] if args.quick else PEERS_FULL_EXTRA)
    ]
    all_targets = singles + CLUSTER
    wanted = set(args.targets.split(",")) if args.targets else {t.name for t in all_targets}
    # Issue 21's transport targets run only when named (not part of the default run).
    transports = [t for t in TRANSPORTS if t.name in wanted]
    singles += transports
    all_targets += transports
    wanted |= {t.name for t in variants}
    picked = args.scenarios.split(",") if args.scenarios else None
    chosen = [
        s for s in scenarios(args.quick)
        if (picked is None and not s.on_demand) or (picked is not None and s.name in picked)
    ]
    if picked is not None and "knee" in picked:
        chosen += knee_scenarios(args.quick)

    work = Path(tempfile.mkdtemp(prefix="icreate-bench-"))
    logs = BENCH / ".logs"
    launcher = Launcher(work, logs)
    started = time.time()
    report: dict[str, Any] = {
        "mode": mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": load_average(), "nice": args.nice},
        "code": code_version(),
        "scenarios": {s.name: {"kind": s.kind, "docs": s.docs, **s.params} for s in chosen},
        "targets": {t.name: t.label for t in all_targets if t.name in wanted},
        "results": {},
    }
    try:
        for scenario in chosen:
            pool = [t for t in singles + (CLUSTER if scenario.cluster else [])
                    if t.name in wanted and (scenario.kinds is None or t.kind in scenario.kinds)]
            runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in pool}
            # Repeats interleave the targets so that noise from other work on the machine
            # lands on all of them alike; the run with the median key figure is reported.
            for rep in range(args.repeat):
                for target in pool:
                    key = f"{scenario.name}/{target.name}"
                    if args.repeat > 1:
                        key += f" #{rep + 1}"
                    print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
                    entry = run_one(launcher, target, scenario, work, args.quick)
                    entry["loadavg"] = load_average()
                    runs[target.name].append(entry)
                    print(f"    {summary_line(scenario, entry)}", flush=True)
            for name, entries in runs.items():
                report["results"].setdefault(scenario.name, {})[name] = median_run(
                    scenario, entries
                )
    finally:
        launcher.close()
    report["seconds"] = time.time() - started
    if any(s.name.startswith("knee") for s in chosen):
        report["knee"] = knee(report["results"])
        for name, found in report["knee"].items():
            print(f"knee of {name}: {found['knee_docs'] or 'none up to ' + str(KNEE_DOCS[-1])} "
                  f"documents (p99 ms by documents: {found['p99_ms']})", flush=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    for path in (RESULTS / f"{mode}-{stamp}.json", RESULTS / f"{mode}-latest.json"):
        path.write_text(json.dumps(report, indent=1, sort_keys=True))
    if not args.no_readme:
        write_readme(report, BENCH / "README.md")
    print(f"results: bench/results/{mode}-{stamp}.json ({report['seconds']:.0f} s)")
    return 0


def run_profiles(quick: bool, targets: str | None, picked: str | None = None) -> int:
    """py-spy profiles of our server (single process, and one node of the pair) under load."""
    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="icreate-bench-"))
    launcher = Launcher(work, BENCH / ".logs")
    names = targets.split(",") if targets else ["ours", "ours-x2"]
    RESULTS.mkdir(exist_ok=True)
    try:
        for scenario in scenarios(quick):
            wanted = set(picked.split(",")) if picked else {"edit20", "edit50", "idle"}
            if scenario.name not in wanted & {"edit20", "edit50", "idle", "storm"}:
                continue
            for target in [t for t in [OURS, *CLUSTER] if t.name in names]:
                if target.processes > 1 and not scenario.cluster:
                    continue
                raw = BENCH / ".logs" / f"profile-{target.name}-{scenario.name}.raw"
                entry = run_one(launcher, target, scenario, work, quick, raw)
                print(f"{scenario.name}/{target.name}: {summary_line(scenario, entry)}")
                if raw.exists():
                    text = pyspy.summarize(raw)
                    out = RESULTS / f"profile-{target.name}-{scenario.name}.txt"
                    out.write_text(f"{scenario.name} on {target.label}: "
                                   f"{summary_line(scenario, entry)}\n\n{text}")
                    print(f"  profile: {out.relative_to(BENCH.parent)}")
                else:
                    print("  no profile (py-spy missing or failed)")
    finally:
        launcher.close()
    return 0


def run_one(
    launcher: Launcher,
    target: Target,
    scenario: Scenario,
    work: Path,
    quick: bool,
    profile_out: Path | None = None,
    per_process: bool = False,
) -> dict[str, Any]:
    """``per_process``: also each server process's CPU, as groups ``server-0``, ``server-1``..."""
    try:
        running = launcher.start(target, scenario.name)
    except (RuntimeError, TimeoutError, OSError) as exc:
        return {"error": f"start failed: {exc}"}
    if per_process:
        for index, pid in enumerate(running.groups[0].pids()):
            running.groups.append(Group(f"{PART}{index}", lambda pid=pid: [pid]))
    try:
        deadline = 330 if scenario.kind in {"history", "idle", "storm"} else 120
        return run_loadgen(running, scenario, work, deadline, profile_out)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": f"loadgen failed: {exc}"}
    finally:
        running.stop()
        for proc in running.procs:
            if proc.proc is not None and proc.proc.returncode not in (0, -15, 143, None):
                code = proc.proc.returncode
                print(f"    {proc.name} exited {code}: {proc.tail(5)}", file=sys.stderr)


def key_figure(scenario: Scenario, entry: dict[str, Any]) -> float:
    """What the median run is chosen by (errors sort last)."""
    value: Any = None
    if scenario.kind == "edit" and scenario.judged_by == "cpu":
        value = (entry.get("server") or {}).get("server", {}).get("cpu_us_per_delivered")
    elif scenario.kind == "edit":
        value = (entry.get("latency_ms") or {}).get("p99")
    elif scenario.kind == "idle":
        value = (entry.get("server") or {}).get("server", {}).get("rss_kb_per_conn")
    elif scenario.kind == "history":
        value = entry.get("sync_ms_median")
    elif scenario.kind == "simul":
        value = -float(entry.get("all_synced_rounds") or 0)
    elif scenario.kind == "storm":
        value = entry.get("resync_all_ms")
    return float(value) if isinstance(value, (int, float)) else float("inf")


def median_run(scenario: Scenario, entries: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(entries, key=lambda e: key_figure(scenario, e))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(entries) > 1:
        chosen["repeats"] = [
            {"key": key_figure(scenario, e), "summary": summary_line(scenario, e),
             "loadavg": e.get("loadavg"), "server": e.get("server")}
            for e in entries
        ]
    return chosen


def summary_line(scenario: Scenario, entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"ERROR {entry['error'][:300]}"
    server = entry.get("server", {}).get("server", {})
    if scenario.kind == "edit":
        lat = entry.get("latency_ms", {})
        clear = entry.get("latency_outside_loadgen_gc_ms", {})
        return (
            f"p50 {fmt(lat.get('p50'))} ms p99 {fmt(lat.get('p99'))} ms "
            f"(clear of loadgen GC {fmt(clear.get('p99'))}), "
            f"{fmt(entry.get('delivered_per_s'))} upd/s, "
            f"{fmt(server.get('cpu_us_per_delivered'))} µs/upd, rss {fmt(server.get('rss_mb'))} MB"
        )
    if scenario.kind == "idle":
        return (
            f"{entry.get('synced')}/{entry.get('clients')} synced, "
            f"{fmt(server.get('rss_kb_per_conn'))} KB/conn, "
            f"{fmt(server.get('cpu_ms_per_conn_per_s'), 4)} ms CPU/conn/s"
        )
    if scenario.kind == "storm":
        return storm_line(entry)
    if scenario.kind == "simul":
        rounds = f"{entry.get('all_synced_rounds')}/{entry.get('rounds')}"
        return f"all synced in {rounds} rounds {entry.get('synced_per_round')}"
    return (
        f"sync median {fmt(entry.get('sync_ms_median'))} ms, "
        f"{entry.get('payload_bytes_median')} B payload, {entry.get('wire_bytes_median')} B wire, "
        f"ingest {fmt(entry.get('ingest_ms'))} ms, ok {entry.get('fresh_ok')}"
    )


def storm_line(entry: dict[str, Any]) -> str:
    restart = entry.get("restart") or {}
    loads = entry.get("document_loads") or {}
    server = (entry.get("server") or {}).get("server", {})
    opened = (entry.get("server_open") or {}).get("server", {})
    resync = entry.get("resync_ms") or {}
    return (
        f"open {fmt(entry.get('open_ms'), 0)} ms ({entry.get('synced')}/{entry.get('clients')}, "
        f"CPU {fmt(opened.get('cpu_s'), 2)} s); stop {fmt(restart.get('stop_s'), 2)} s, "
        f"start {fmt(restart.get('start_s'), 2)} s; resync all "
        f"{fmt(entry.get('resync_all_ms'), 0)} ms (p50 {fmt(resync.get('p50'), 0)}, "
        f"{entry.get('resynced')}/{entry.get('clients')}), CPU {fmt(server.get('cpu_s'), 2)} s; "
        f"refused {entry.get('refused')} {entry.get('close_codes_after_ready') or ''}, "
        f"loads {loads.get('icreate_doc_loads_total', '–')}, "
        f"access queries {loads.get('icreate_doc_access_queries_total', '–')} for "
        f"{loads.get('icreate_doc_access_checks_total', '–')} checks, "
        f"server text ok {entry.get('server_text_ok')}/{entry.get('docs')}"
    )


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
