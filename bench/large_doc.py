"""Issue 21, large documents: fresh stock clients joining a 20 MB document with a long history.

    .venv/bin/python bench/large_doc.py [--targets ours,yws] [--repeats 2] [--variant NAME:K=V]

The document (LINES lines of ~190 characters, then EDITS small edits at random places by 8
authors) is built once by Node (bench/large_doc.mjs build) and loaded into each target through
the y-websocket protocol by one writer (batches of ~1 MB). Then JOINS fresh y-websocket clients
(Node ``ws``, offering permessage-deflate as browsers do) join one after another and TOGETHER
join at once; each is timed from ``new WebsocketProvider`` to its ``sync`` event with the whole
text. The server (pinned to core 0 with its PostgreSQL) is sampled at each phase: CPU per join,
RSS after loading, after the joins and after settling. Targets run interleaved, ``--repeats``
times; the median run (by sequential p50) is reported. Results: bench/results/bigdoc-*.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import Group, pinned_cmd, prioritize
from run import load_average, raise_nofile, sample, variant_target
from targets import BENCH, OURS, PEERS, Launcher, Target

LOADGEN_CORE = 1
RESULTS = BENCH / "results"
# A 20 MB text with its history is more than the default document limit (32 MB of updates).
# A reconnecting y-websocket client answers with its whole state in one message: allowed too.
OURS_BIG = Target(OURS.name, OURS.label, "ours", options={
    "MAX_DOCUMENT_BYTES": str(128 << 20), "WS_MAX_MESSAGE_BYTES": str(64 << 20)})


def build(out: Path, lines: int, edits: int) -> dict[str, Any]:
    done = subprocess.run(
        pinned_cmd(["node", "--max-old-space-size=4096", "large_doc.mjs", "build", str(out),
                    str(lines), str(edits)], LOADGEN_CORE),
        cwd=BENCH, capture_output=True, text=True, check=True,
    )
    built: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return built


def run_target(launcher: Launcher, target: Target, updates: Path, args: argparse.Namespace,
               work: Path) -> dict[str, Any]:
    running = launcher.start(target, "bigdoc")
    try:
        doc = running.make_docs(1)[0]
        spec = {"target": running.target, "doc": doc, "updates": str(updates),
                "joins": args.joins, "together": args.together,
                # Past the compactor's first run after loading (DOC_COMPACT_AFTER_S, 5 s).
                "settleMs": 8000}
        spec_path = work / f"spec-{target.name}.json"
        spec_path.write_text(json.dumps(spec))
        return drive(spec_path, running.groups)
    finally:
        running.stop()


def drive(spec_path: Path, groups: list[Group]) -> dict[str, Any]:
    proc = subprocess.Popen(
        pinned_cmd(["node", "--max-old-space-size=4096", "large_doc.mjs", "run", str(spec_path)],
                   LOADGEN_CORE),
        cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    prioritize(proc.pid)
    assert proc.stdin is not None and proc.stdout is not None
    marks: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {}
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "mark":
                marks[event["name"]] = {"at": time.monotonic(), "sample": sample(groups)}
                proc.stdin.write(b"\n")
                proc.stdin.flush()
            elif event.get("event") == "progress":
                print(f"  {json.dumps(event)}", flush=True)
            elif event.get("event") == "result":
                result = event
        proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if "error" in result or "sequential" not in result:
        return {"error": result.get("error", "no result"), "marks": list(marks)}
    return summarize(result, marks)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def summarize(result: dict[str, Any], marks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def cpu(a: str, b: str) -> float:
        return float(marks[b]["sample"]["server"]["cpu_s"] - marks[a]["sample"]["server"]["cpu_s"])

    def rss(name: str) -> float:
        return float(marks[name]["sample"]["server"]["rss"]) / 1e6

    seq = result["sequential"]
    tog = result["together"]
    seq_ms = [r["ms"] for r in seq if r["ok"]]
    tog_ms = [r["ms"] for r in tog if r["ok"]]
    return {
        "text_chars": result["text_chars"],
        "load_ms": result["load_ms"],
        "client_floor_ms": result.get("client_floor_ms"),
        "sequential_ok": f"{len(seq_ms)}/{len(seq)}",
        "together_ok": f"{len(tog_ms)}/{len(tog)}",
        "seq_p50_ms": pct(seq_ms, 50),
        "seq_p95_ms": pct(seq_ms, 95),
        "together_p50_ms": pct(tog_ms, 50),
        "together_max_ms": max(tog_ms) if tog_ms else None,
        "payload_mb": seq[0]["payload_bytes"] / 1e6,
        "wire_mb": seq[0]["wire_bytes"] / 1e6,
        "deflate": seq[0]["deflate"],
        "cpu_ms_per_join_seq": cpu("before_joins", "after_sequential") / len(seq) * 1e3,
        "cpu_ms_per_join_together": cpu("after_sequential", "after_together") / len(tog) * 1e3,
        "rss_before_load_mb": rss("before_load"),
        "rss_loaded_mb": rss("before_joins"),
        "rss_after_joins_mb": rss("after_together"),
        "rss_settled_mb": rss("settled"),
        "runs": {"sequential": seq, "together": tog},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="ours,yws")
    parser.add_argument("--variant", action="append", default=[],
                        help="also run ours as target ours-NAME with these settings (NAME:K=V,...)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lines", type=int, default=110_000)
    parser.add_argument("--edits", type=int, default=60_000)
    parser.add_argument("--joins", type=int, default=7)
    parser.add_argument("--together", type=int, default=3)
    args = parser.parse_args(argv)
    raise_nofile()
    pool = [OURS_BIG, *PEERS]
    for spec in args.variant:
        variant = variant_target(spec)
        variant.options = {**OURS_BIG.options, **variant.options}
        pool.append(variant)
    wanted = args.targets.split(",") + [f"ours-{v.partition(':')[0]}" for v in args.variant]
    targets = [t for t in pool if t.name in wanted]
    started = time.time()
    load_before = load_average()
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="bench-bigdoc-") as tmp:
        work = Path(tmp)
        logs = BENCH / ".logs"
        logs.mkdir(exist_ok=True)
        # The build is deterministic (seeded): kept between runs under bench/.logs.
        updates = logs / f"bigdoc-{args.lines}-{args.edits}.bin"
        built_path = updates.with_suffix(".json")
        if updates.exists() and built_path.exists():
            built = json.loads(built_path.read_text())
        else:
            built = build(updates, args.lines, args.edits)
            built_path.write_text(json.dumps(built))
        print(f"built: {built}", flush=True)
        launcher = Launcher(work, logs)
        try:
            for repeat in range(args.repeats):
                for target in targets:
                    entry = run_target(launcher, target, updates, args, work)
                    entry["load_average"] = load_average()
                    runs[target.name].append(entry)
                    print(f"[{repeat + 1}/{args.repeats}] {target.name}: "
                          f"{json.dumps({k: v for k, v in entry.items() if k != 'runs'})}",
                          flush=True)
        finally:
            launcher.close()
    report = {
        "scenario": "bigdoc", "started": started, "seconds": time.time() - started,
        "load_average_before": load_before, "load_average_after": load_average(),
        "document": built, "args": vars(args),
        "targets": {t.name: t.label for t in targets},
        "median": {name: median_run(entries) for name, entries in runs.items()},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    (RESULTS / f"bigdoc-{stamp}.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "bigdoc-latest.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    return 0


def median_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    good = [e for e in entries if e.get("seq_p50_ms") is not None]
    if not good:
        return entries[0] if entries else {}
    good.sort(key=lambda e: e["seq_p50_ms"])
    return good[(len(good) - 1) // 2]


def table(report: dict[str, Any]) -> str:
    """The README's table: one row per target, the median run."""
    cols = [
        ("client floor ms", "client_floor_ms", 0), ("seq p50 ms", "seq_p50_ms", 0),
        ("seq p95 ms", "seq_p95_ms", 0),
        ("3 at once p50 ms", "together_p50_ms", 0), ("payload MB", "payload_mb", 1),
        ("wire MB", "wire_mb", 1), ("CPU ms/join", "cpu_ms_per_join_seq", 0),
        ("CPU ms/join (3 at once)", "cpu_ms_per_join_together", 0),
        ("RSS loaded MB", "rss_loaded_mb", 0), ("RSS after joins MB", "rss_after_joins_mb", 0),
        ("RSS settled MB", "rss_settled_mb", 0),
    ]
    lines = ["| target | " + " | ".join(c[0] for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for name, entry in report["median"].items():
        cells = []
        for _, key, digits in cols:
            value = entry.get(key)
            cells.append("—" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {report['targets'][name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
