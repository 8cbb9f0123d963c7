"""Markdown tables from a results JSON, written between markers in bench/README.md."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"

SINGLE = ["ours", "yws", "hocuspocus", "pycrdt", "pycrdt-nodeflate"]
PEER_NAMES = {"yws", "hocuspocus", "pycrdt", "pycrdt-nodeflate"}

Getter = Callable[[dict[str, Any]], float | None]


def dig(entry: dict[str, Any], *path: str) -> Any:
    value: Any = entry
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


# (label, scenario, getter, digits, lower_is_better or None for no ratio)
ROWS: list[tuple[str, str, Getter, int, bool | None]] = [
    ("20×5×5 edit→peer p50 (ms)", "edit20", lambda e: dig(e, "latency_ms", "p50"), 2, True),
    ("20×5×5 edit→peer p99 (ms)", "edit20", lambda e: dig(e, "latency_ms", "p99"), 2, True),
    ("20×5×5 … p99 of deliveries clear of load-generator GC pauses (ms)", "edit20",
     lambda e: dig(e, "latency_outside_loadgen_gc_ms", "p99"), 2, True),
    ("20×5×5 load generator's GC pauses in the window (ms)", "edit20",
     lambda e: dig(e, "loadgen_gc", "total_ms"), 0, None),
    ("20×5×5 server CPU per delivered update (µs)", "edit20",
     lambda e: dig(e, "server", "server", "cpu_us_per_delivered"), 1, True),
    ("20×5×5 … PostgreSQL's own CPU per delivered update (µs)", "edit20",
     lambda e: dig(e, "server", "db", "cpu_us_per_delivered"), 1, None),
    ("20×5×5 … including PostgreSQL (µs)", "edit20",
     lambda e: dig(e, "server", "all_cpu_us_per_delivered"), 1, None),
    ("50×5×5 edit→peer p50 (ms)", "edit50", lambda e: dig(e, "latency_ms", "p50"), 2, True),
    ("50×5×5 edit→peer p99 (ms)", "edit50", lambda e: dig(e, "latency_ms", "p99"), 2, True),
    ("50×5×5 delivered updates/s", "edit50", lambda e: e.get("delivered_per_s"), 0, False),
    ("50×5×5 server CPU per delivered update (µs)", "edit50",
     lambda e: dig(e, "server", "server", "cpu_us_per_delivered"), 1, True),
    ("50×5×5 … PostgreSQL's own CPU per delivered update (µs)", "edit50",
     lambda e: dig(e, "server", "db", "cpu_us_per_delivered"), 1, None),
    ("50×5×5 … including PostgreSQL (µs)", "edit50",
     lambda e: dig(e, "server", "all_cpu_us_per_delivered"), 1, None),
    ("50×5×5 server CPU (% of a core)", "edit50",
     lambda e: pct(dig(e, "server", "server", "cpu_fraction")), 0, True),
    ("50×5×5 server RSS (MB)", "edit50", lambda e: dig(e, "server", "server", "rss_mb"), 0, True),
    ("idle: connections synced", "idle", lambda e: ratio_text(e, "synced", "clients"), 0, None),
    ("idle: RSS per connection (KB)", "idle",
     lambda e: dig(e, "server", "server", "rss_kb_per_conn"), 1, True),
    ("idle: CPU per connection (ms/s)", "idle",
     lambda e: dig(e, "server", "server", "cpu_ms_per_conn_per_s"), 4, True),
    ("5 simultaneous joins: rounds with 5/5 synced in 2 s", "simul",
     lambda e: ratio_text(e, "all_synced_rounds", "rounds"), 0, None),
    ("history: fresh-client sync, median (ms)", "history",
     lambda e: e.get("sync_ms_median"), 1, True),
    ("history: sync payload (bytes)", "history", lambda e: e.get("payload_bytes_median"), 0, True),
    ("history: sync on the wire (bytes)", "history", lambda e: e.get("wire_bytes_median"), 0, True),
    ("history: ingest of all edits (s)", "history",
     lambda e: sec(e.get("ingest_ms")), 1, True),
]


def pct(value: Any) -> float | None:
    return value * 100 if isinstance(value, (int, float)) else None


def sec(value: Any) -> float | None:
    return value / 1000 if isinstance(value, (int, float)) else None


def ratio_text(entry: dict[str, Any], part: str, whole: str) -> Any:
    if entry.get(part) is None:
        return None
    return f"{entry.get(part)}/{entry.get(whole)}"


def cell(results: dict[str, Any], scenario: str, target: str, getter: Getter) -> Any:
    entry = results.get(scenario, {}).get(target)
    if entry is None:
        return None
    if "error" in entry:
        return "error"
    try:
        return getter(entry)
    except (TypeError, KeyError):
        return None


def single_table(report: dict[str, Any]) -> list[str]:
    results = report["results"]
    present = [t for t in SINGLE if any(t in r for r in results.values())]
    labels = [report["targets"].get(t, t) for t in present]
    lines = [
        "| metric | " + " | ".join(labels) + " | ours ÷ best peer |",
        "|---|" + "---:|" * (len(present) + 1),
    ]
    for label, scenario, getter, digits, lower in ROWS:
        if scenario not in results:
            continue
        values = [cell(results, scenario, t, getter) for t in present]
        ratio = "–"
        ours = values[present.index("ours")] if "ours" in present else None
        peers = [v for t, v in zip(present, values, strict=True)
                 if t in PEER_NAMES and isinstance(v, (int, float))]
        if lower is not None and isinstance(ours, (int, float)) and peers:
            best = min(peers) if lower else max(peers)
            if best:
                ratio = f"{ours / best:.2f}"
        lines.append(
            f"| {label} | " + " | ".join(num(v, digits) for v in values) + f" | {ratio} |"
        )
    return lines


CLUSTER_ROWS: list[tuple[str, Getter, int]] = [
    ("edit→peer p50, all (ms)", lambda e: dig(e, "latency_ms", "p50"), 2),
    ("edit→peer p99, all (ms)", lambda e: dig(e, "latency_ms", "p99"), 2),
    ("edit→peer p99, same process (ms)", lambda e: dig(e, "latency_same_ms", "p99"), 2),
    ("edit→peer p99, across processes (ms)", lambda e: dig(e, "latency_cross_ms", "p99"), 2),
    ("delivered updates/s", lambda e: e.get("delivered_per_s"), 0),
    ("server processes' CPU per delivered update (µs)",
     lambda e: dig(e, "server", "server", "cpu_us_per_delivered"), 1),
    ("Redis CPU per delivered update (µs)",
     lambda e: dig(e, "server", "redis", "cpu_us_per_delivered"), 1),
]


def cluster_table(report: dict[str, Any], scenario: str) -> list[str]:
    results = report["results"]
    present = results.get(scenario, {})
    cols = [t for t in ("ours", "ours-x2", "hocuspocus", "hocuspocus-x2") if t in present]
    if not any(c.endswith("-x2") for c in cols):
        return []
    labels = [report["targets"].get(t, t) for t in cols]
    lines = [
        f"**{scenario}** ({report['scenarios'][scenario]['docs']} docs × 5 clients × 5 edits/s)",
        "",
        "| metric | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for label, getter, digits in CLUSTER_ROWS:
        values = [cell(results, scenario, t, getter) for t in cols]
        lines.append(f"| {label} | " + " | ".join(num(v, digits) for v in values) + " |")
    single = cell(results, scenario, "ours", lambda e: dig(e, "latency_ms", "p99"))
    cross = cell(results, scenario, "ours-x2", lambda e: dig(e, "latency_cross_ms", "p99"))
    hp = cell(results, scenario, "hocuspocus-x2", lambda e: dig(e, "latency_cross_ms", "p99"))
    if isinstance(single, (int, float)) and isinstance(cross, (int, float)) and single:
        note = (
            f"ours cross-process p99 ÷ ours single-process p99 = {cross / single:.2f} (target ≤ 2)"
        )
        if isinstance(hp, (int, float)) and hp:
            note += f"; ÷ Hocuspocus+Redis cross-process p99 = {cross / hp:.2f} (target < 1)"
        lines += ["", note]
    lines.append("")
    return lines


def render(report: dict[str, Any]) -> str:
    load = report["machine"].get("loadavg_start")
    runs = "; ".join(
        f"{r['started']} ({len(r['scenarios'])} results)" for r in report.get("merged_runs", [])
    )
    lines = [
        START,
        f"Run: `{report['mode']}` mode, started {report['started']}, "
        f"{report.get('seconds', 0):.0f} s, load average at start {load} "
        "(the machine is shared: other work running at the same time adds noise).",
        *([f"Scenarios merged from runs — {runs}."] if runs else []),
        "",
        "### Single process",
        "",
        *single_table(report),
        "",
    ]
    cluster = [*cluster_table(report, "edit20"), *cluster_table(report, "edit50")]
    if cluster:
        lines += ["### Cluster: 2 processes sharing Redis", "", *cluster]
    lines.append(END)
    return "\n".join(lines)


def write_readme(report: dict[str, Any], readme: Path) -> None:
    replace_section(readme, START, END, render(report))


def replace_section(readme: Path, start: str, end: str, block: str) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of the
    README's section between those markers, or at the end if there is none yet."""
    text = readme.read_text() if readme.exists() else "# Benchmark\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)


def merge(base: dict[str, Any], overlays: list[dict[str, Any]]) -> dict[str, Any]:
    """``base`` with the (scenario, target) results that later runs measured again."""
    merged: dict[str, Any] = json.loads(json.dumps(base))

    def keys(report: dict[str, Any]) -> list[str]:
        return sorted(f"{s}/{t}" for s, entries in report["results"].items() for t in entries)

    merged["merged_runs"] = [{"started": base["started"], "scenarios": keys(base)}]
    for overlay in overlays:
        for scenario, entries in overlay["results"].items():
            merged["results"].setdefault(scenario, {}).update(entries)
            merged["scenarios"][scenario] = overlay["scenarios"][scenario]
        merged["targets"].update(overlay["targets"])
        merged["merged_runs"].append({"started": overlay["started"], "scenarios": keys(overlay)})
        merged["seconds"] = merged.get("seconds", 0) + overlay.get("seconds", 0)
    return merged


if __name__ == "__main__":
    # python bench/report.py RESULTS.json           -> rewrites the README table
    # python bench/report.py --merge OUT BASE OVERLAY...  -> OUT = BASE with OVERLAY's scenarios
    readme = Path(__file__).resolve().parent / "README.md"
    if sys.argv[1] == "--merge":
        out = Path(sys.argv[2])
        base = json.loads(Path(sys.argv[3]).read_text())
        overlays = [json.loads(Path(p).read_text()) for p in sys.argv[4:]]
        combined = merge(base, overlays)
        out.write_text(json.dumps(combined, indent=1, sort_keys=True))
        write_readme(combined, readme)
    else:
        write_readme(json.loads(Path(sys.argv[1]).read_text()), readme)
