"""Python: ruff, radon and bandit over one file, read into findings and blocks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ai.analysers.model import Block, Finding, Report, Severity

RunTool = Callable[..., Awaitable[tuple[int, bytes, bytes]]]

RUFF_RULES = "F,E9,B,PERF,C4,PLR0911,PLR0912,PLR0913,PLR0915"
# radon's cyclomatic complexity per block: from this value on it is a finding.
COMPLEX_FROM = 6


def ruff_category(code: str) -> str:
    if code.startswith(("PERF", "C4")):
        return "performance"
    if code.startswith("PLR"):
        return "complexity"
    return "correctness"


def ruff_severity(code: str) -> Severity:
    if code.startswith(("F8", "E9")):  # undefined names, syntax errors
        return "high"
    if code.startswith(("B", "F")):
        return "medium"
    return "low"


def complexity_severity(value: int) -> Severity:
    return "high" if value > 20 else "medium" if value > 10 else "low"


def read_ruff(report: Report, raw: bytes) -> None:
    for item in json.loads(raw or b"[]"):
        code = str(item.get("code") or "")
        start = int((item.get("location") or {}).get("row") or 1)
        end = int((item.get("end_location") or {}).get("row") or start)
        report.findings.append(Finding(
            "ruff", code, ruff_category(code), ruff_severity(code), str(item.get("message")),
            start, max(start, end)))


def read_radon_cc(report: Report, raw: bytes) -> None:
    for blocks in json.loads(raw or b"{}").values():
        if not isinstance(blocks, list):  # {"error": ...}: the file does not parse
            continue
        for item in blocks:
            kind = str(item.get("type"))
            name = str(item.get("name"))
            if item.get("classname") and kind == "method":
                name = f"{item['classname']}.{name}"
            value = int(item.get("complexity") or 0)
            start, end = int(item["lineno"]), int(item.get("endline") or item["lineno"])
            report.blocks.append(Block(kind, name, start, end, value))
            if value >= COMPLEX_FROM:
                report.findings.append(Finding(
                    "radon", f"CC-{item.get('rank')}", "complexity", complexity_severity(value),
                    f"{kind} {name} has a cyclomatic complexity of {value} (rank "
                    f"{item.get('rank')})", start, end))
    report.blocks.sort(key=lambda b: (b.line_start, b.line_end))


def read_radon_mi(report: Report, raw: bytes) -> None:
    for value in json.loads(raw or b"{}").values():
        if isinstance(value, dict) and "mi" in value:
            report.metrics["maintainability_index"] = round(float(value["mi"]), 1)
            report.metrics["maintainability_rank"] = value.get("rank")


def read_bandit(report: Report, raw: bytes) -> None:
    data: dict[str, Any] = json.loads(raw or b"{}")
    for item in data.get("results") or ():
        lines = item.get("line_range") or [item.get("line_number") or 1]
        severity = str(item.get("issue_severity") or "LOW").lower()
        report.findings.append(Finding(
            "bandit", str(item.get("test_id")), "security",
            severity if severity in ("high", "medium", "low") else "low",  # type: ignore[arg-type]
            f"{item.get('issue_text')} (confidence {str(item.get('issue_confidence')).lower()})",
            int(min(lines)), int(max(lines))))


async def run_all(report: Report, target: Path, run_tool: RunTool, python: str) -> None:
    tools: dict[str, tuple[list[str], Callable[[Report, bytes], None], set[int]]] = {
        # ruff exits 1 when it found something; bandit too.
        "ruff": ([python, "-m", "ruff", "check", "--isolated", "--no-cache", "--exit-zero",
                  "--output-format", "json", "--select", RUFF_RULES, target.name],
                 read_ruff, {0}),
        "radon": ([python, "-m", "radon", "cc", "-j", "-s", target.name], read_radon_cc, {0}),
        "radon-mi": ([python, "-m", "radon", "mi", "-j", target.name], read_radon_mi, {0}),
        "bandit": ([python, "-m", "bandit", "-q", "-f", "json", target.name], read_bandit,
                   {0, 1}),
    }
    outcomes = await asyncio.gather(
        *(run_tool(args, cwd=target.parent) for args, _, _ in tools.values()),
        return_exceptions=True,
    )
    for (name, (_, read, ok_codes)), outcome in zip(tools.items(), outcomes, strict=True):
        if isinstance(outcome, BaseException):
            report.errors.append(f"{name}: {type(outcome).__name__}")
            continue
        code, out, err = outcome
        if code not in ok_codes:
            report.errors.append(f"{name}: exit {code}: {err.decode(errors='replace')[:300]}")
            continue
        try:
            read(report, out)
        except (ValueError, KeyError, TypeError) as exc:
            report.errors.append(f"{name}: unreadable output ({exc})")
            continue
        report.tools[name.split("-")[0]] = "ok"
