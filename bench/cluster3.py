"""Issue 21's cluster comparison: ours-x3 against hocuspocus-x3, each with one Redis.

    .venv/bin/python bench/cluster3.py [--repeat 3] [--scenarios edit20,edit50] [--quick]
        [--before PATH] [--profile]

Each run starts the target fresh: three server processes and their Redis (and, for ours,
PostgreSQL) pinned to core 0, the Node load generator pinned to core 1, as in bench/run.py;
a document's 5 clients are spread over the three processes (2/2/1). The targets alternate
within every repeat (interleaved), so machine noise lands on both alike. Reported per run:
the server processes' CPU per delivered update (summed, and each process's), Redis's and
PostgreSQL's, p99 edit→peer latency for a receiver on the sender's process and on another.
``--before PATH`` adds ``ours-x3-before``: a checkout of another commit (a git worktree)
run the same way. ``--profile`` runs ours once per scenario with py-spy on every process.
Results: bench/results/cluster3-<timestamp>.json and a Markdown table on stdout.
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

import pyspy
from procs import PRIORITY
from run import (
    PART,
    RESULTS,
    Scenario,
    code_version,
    load_average,
    raise_nofile,
    run_one,
    scenarios,
    summary_line,
)
from targets import BENCH, CLUSTER3, Launcher, Target


def dig(entry: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)  # type: ignore[assignment]
    return entry


def figures(entry: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that the table reports."""
    server = entry.get("server") or {}
    same = dig(entry, "latency_same_ms", "p99")
    cross = dig(entry, "latency_cross_ms", "p99")
    per_process = [
        dig(server, f"{PART}{i}", "cpu_us_per_delivered") for i in range(3)
    ]
    return {
        "cpu_us": dig(server, "server", "cpu_us_per_delivered"),
        "cpu_us_each": per_process,
        "redis_us": dig(server, "redis", "cpu_us_per_delivered"),
        "db_us": dig(server, "db", "cpu_us_per_delivered"),
        "p50": dig(entry, "latency_ms", "p50"),
        "p99": dig(entry, "latency_ms", "p99"),
        "p99_same": same,
        "p99_cross": cross,
        "cross_over_same": cross / same if same and cross else None,
        "delivered_per_s": entry.get("delivered_per_s"),
        "expected": entry.get("expected_deliveries"),
        "delivered": entry.get("delivered"),
        "diverged": entry.get("diverged_docs_after_300ms"),
        "loadavg": entry.get("loadavg"),
    }


def median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(numbers) if numbers else None


def table(report: dict[str, Any]) -> str:
    """Medians over the repeats per target, and the ratios of the interleaved pairs."""
    lines: list[str] = []
    for scenario, by_target in report["results"].items():
        names = list(by_target)
        lines += [
            f"**{scenario}** ({report['scenarios'][scenario]['docs']} docs × 5 clients × 5 "
            f"edits/s, {len(next(iter(by_target.values())))} interleaved repeats, medians)",
            "",
            "| metric | " + " | ".join(report["targets"][n] for n in names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        rows = [
            ("server processes' CPU per delivered update (µs)", "cpu_us", 1),
            ("Redis CPU per delivered update (µs)", "redis_us", 1),
            ("PostgreSQL CPU per delivered update (µs)", "db_us", 1),
            ("edit→peer p50, all (ms)", "p50", 2),
            ("edit→peer p99, all (ms)", "p99", 2),
            ("p99, receiver on the sender's process (ms)", "p99_same", 2),
            ("p99, receiver on another process (ms)", "p99_cross", 2),
            ("cross ÷ same-process p99", "cross_over_same", 2),
            ("delivered updates/s", "delivered_per_s", 0),
        ]
        for label, key, digits in rows:
            cells = []
            for name in names:
                value = median([figures(e)[key] for e in by_target[name] if "error" not in e])
                cells.append("–" if value is None else f"{value:.{digits}f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        ours, peer = by_target.get("ours-x3"), by_target.get("hocuspocus-x3")
        if ours and peer:
            pairs = [
                figures(a)["cpu_us"] / figures(b)["cpu_us"]
                for a, b in zip(ours, peer, strict=False)
                if figures(a)["cpu_us"] and figures(b)["cpu_us"]
            ]
            lines.append(
                "ours ÷ Hocuspocus CPU per delivered update, per interleaved pair: "
                + ", ".join(f"{r:.2f}" for r in pairs)
                + (f" (median {statistics.median(pairs):.2f}, target ≤ 0.75)" if pairs else "")
            )
        for name in names:
            runs = [figures(e) for e in by_target[name] if "error" not in e]
            lines.append(
                f"{name}: per-process µs "
                + "; ".join(
                    "/".join("–" if v is None else f"{v:.0f}" for v in f["cpu_us_each"])
                    for f in runs
                )
                + "; load " + "; ".join(
                    "/".join(f"{x:.1f}" for x in f["loadavg"] or []) for f in runs
                )
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 s windows instead of 20 s")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default="edit20,edit50")
    parser.add_argument("--targets", help="comma-separated (default: ours-x3,hocuspocus-x3)")
    parser.add_argument("--before", metavar="PATH",
                        help="also run ours-x3-before from this checkout (git worktree)")
    parser.add_argument("--profile", action="store_true",
                        help="profile ours-x3 (py-spy on each process); no table")
    args = parser.parse_args(argv)
    PRIORITY["nice"] = -10 if os.geteuid() == 0 else 0  # as bench/run.py
    raise_nofile()
    targets = list(CLUSTER3)
    if args.before:
        targets.insert(1, Target("ours-x3-before", "ours ×3 + Redis (before)", "ours",
                                 processes=3, redis=True,
                                 options={"BENCH_SOURCE": str(Path(args.before).resolve())}))
    if args.targets:
        wanted = set(args.targets.split(","))
        targets = [t for t in targets if t.name in wanted]
    picked = args.scenarios.split(",")
    chosen = [s for s in scenarios(args.quick) if s.name in picked]
    work = Path(tempfile.mkdtemp(prefix="icreate-bench-"))
    launcher = Launcher(work, BENCH / ".logs")
    RESULTS.mkdir(exist_ok=True)
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"loadavg_start": load_average()},
        "code": code_version(),
        "scenarios": {s.name: {"kind": s.kind, "docs": s.docs, **s.params} for s in chosen},
        "targets": {t.name: t.label for t in targets},
        "results": {},
    }
    try:
        if args.profile:
            return profile(launcher, chosen, work)
        for scenario in chosen:
            runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
            for rep in range(args.repeat):
                for target in targets:
                    print(f"[{time.strftime('%H:%M:%S')}] {scenario.name}/{target.name} "
                          f"#{rep + 1} ...", flush=True)
                    entry = run_one(launcher, target, scenario, work, quick=False, per_process=True)
                    entry["loadavg"] = load_average()
                    entry.pop("events", None)
                    runs[target.name].append(entry)
                    print(f"    {summary_line(scenario, entry)}", flush=True)
            report["results"][scenario.name] = runs
    finally:
        launcher.close()
    report["seconds"] = time.time() - started
    (RESULTS / f"cluster3-{stamp}.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    print(table(report))
    print(f"results: bench/results/cluster3-{stamp}.json ({report['seconds']:.0f} s)")
    return 0


def profile(launcher: Launcher, chosen: list[Scenario], work: Path) -> int:
    target = CLUSTER3[0]
    for scenario in chosen:
        raw = BENCH / ".logs" / f"profile-{target.name}-{scenario.name}.raw"
        entry = run_one(launcher, target, scenario, work, False, raw, per_process=True)
        print(f"{scenario.name}/{target.name}: {summary_line(scenario, entry)}")
        for index in range(target.processes):
            path = raw if index == 0 else raw.with_suffix(f".{index}.raw")
            if not path.exists():
                print(f"  process {index}: no profile (py-spy missing or failed)")
                continue
            out = RESULTS / f"profile-{target.name}-{scenario.name}-p{index}.txt"
            out.write_text(f"{scenario.name} on {target.label}, process {index}: "
                           f"{summary_line(scenario, entry)}\n\n{pyspy.summarize(path)}")
            print(f"  profile: {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
