"""Issue 21: the document sockets' transport, measured in one run with interleaved repeats.

    .venv/bin/python bench/transport.py [--repeat 3] [--full] [--targets ...] [--scenarios ...]

The edit workload of bench/run.py (stock y-websocket clients, edit20 and edit50) against a
bare relay on each transport (bench/transport_floor.py: uvicorn with our direct channel,
uvicorn through plain ASGI, picows, granian RSGI), @y/websocket-server, and ours
(persistence on) through uvicorn and through the picows listener (DOC_PICOWS_PORT).
Repeats interleave the targets; every figure in the table is the median over the repeats
of that figure (not the figures of one median run). Raw runs go to
bench/results/transport-<timestamp>.json; the table is printed (bench/README.md keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import PRIORITY
from run import RESULTS, load_average, raise_nofile, run_one, scenarios, summary_line
from targets import BENCH, OURS, PEERS, TRANSPORTS, Launcher, Target

DEFAULT_TARGETS = ("floor-uvicorn", "floor-uvicorn-asgi", "floor-picows", "floor-granian",
                   "yws", "ours", "ours-picows")
PEER = "yws"


def figures(entry: dict[str, Any]) -> dict[str, float | None]:
    server = (entry.get("server") or {}).get("server") or {}
    db = (entry.get("server") or {}).get("db") or {}
    latency = entry.get("latency_ms") or {}
    cpu = server.get("cpu_us_per_delivered")
    db_cpu = db.get("cpu_us_per_delivered")
    return {
        "cpu_us": cpu,
        "cpu_with_db_us": cpu + db_cpu if cpu is not None and db_cpu is not None else None,
        "sys_us": server.get("sys_us_per_delivered"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "delivered_per_s": entry.get("delivered_per_s"),
        "rss_mb": server.get("rss_mb"),
    }


def medians(entries: list[dict[str, Any]]) -> dict[str, float | None]:
    runs = [figures(e) for e in entries if "error" not in e]
    out: dict[str, float | None] = {}
    for key in ("cpu_us", "cpu_with_db_us", "sys_us", "p50_ms", "p99_ms", "delivered_per_s",
                "rss_mb"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def table(report: dict[str, Any]) -> str:
    lines = []
    for scenario, by_target in report["runs"].items():
        lines.append(f"**{scenario}** ({report['scenarios'][scenario]})\n")
        lines.append("| target | CPU/update (µs) | ÷ yws | of which kernel (µs) | "
                     "+ PostgreSQL (µs) | p50 (ms) | p99 (ms) | updates/s | RSS (MB) | "
                     "CPU/update of each repeat (µs) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        peer = medians(by_target.get(PEER, [])).get("cpu_us")
        for name, entries in by_target.items():
            m = medians(entries)
            ratio = m["cpu_us"] / peer if m["cpu_us"] and peer else None
            each = ", ".join(_fmt(figures(e)["cpu_us"]) for e in entries)
            lines.append(
                f"| {report['labels'][name]} | {_fmt(m['cpu_us'])} | {_fmt(ratio, 2)} | "
                f"{_fmt(m['sys_us'])} | {_fmt(m['cpu_with_db_us'])} | {_fmt(m['p50_ms'], 2)} | "
                f"{_fmt(m['p99_ms'], 1)} | {_fmt(m['delivered_per_s'], 0)} | "
                f"{_fmt(m['rss_mb'], 0)} | {each} |"
            )
        lines.append("")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="20 s windows (default: 8 s)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS))
    parser.add_argument("--scenarios", default="edit20,edit50")
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0,
                        help="niceness of measured processes (as bench/run.py)")
    parser.add_argument("--render", metavar="JSON", help="only print the table of a past run")
    args = parser.parse_args(argv)
    if args.render:
        print(table(json.loads(Path(args.render).read_text())))
        return 0
    PRIORITY["nice"] = args.nice
    raise_nofile()
    known = {t.name: t for t in [OURS, *PEERS, *TRANSPORTS]}
    pool: list[Target] = [known[name] for name in args.targets.split(",")]
    chosen = [s for s in scenarios(not args.full) if s.name in args.scenarios.split(",")]
    work = Path(tempfile.mkdtemp(prefix="icreate-transport-"))
    launcher = Launcher(work, BENCH / ".logs")
    started = time.time()
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "loadavg_start": load_average(),
        "labels": {t.name: t.label for t in pool},
        "scenarios": {s.name: f"{s.docs} docs × {s.params.get('clientsPerDoc')} clients × "
                      f"{s.params.get('rate')} edits/s, {s.params.get('durationS')} s window"
                      for s in chosen},
        "runs": {},
    }
    try:
        for scenario in chosen:
            runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in pool}
            for rep in range(args.repeat):
                for target in pool:  # interleaved: noise lands on every target alike
                    print(f"[{time.strftime('%H:%M:%S')}] {scenario.name}/{target.name} "
                          f"#{rep + 1} ...", flush=True)
                    entry = run_one(launcher, target, scenario, work, not args.full)
                    entry["loadavg"] = load_average()
                    entry.pop("events", None)
                    runs[target.name].append(entry)
                    print(f"    {summary_line(scenario, entry)} (load {entry['loadavg'][0]})",
                          flush=True)
            report["runs"][scenario.name] = runs
    finally:
        launcher.close()
    report["seconds"] = time.time() - started
    report["loadavg_end"] = load_average()
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    out = RESULTS / f"transport-{stamp}.json"
    out.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(table(report))
    print(f"load average: start {report['loadavg_start']}, end {report['loadavg_end']}; "
          f"results: {out.relative_to(BENCH.parent)} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
