"""JavaScript/TypeScript: the Node analyser's ESLint messages and outline, read."""

from __future__ import annotations

from typing import Any

from ai.analysers.model import Block, Finding, Report, Severity

COMPLEXITY_RULES = frozenset({"complexity", "max-depth", "max-nested-callbacks", "max-params",
                              "max-statements"})
SECURITY_RULES = frozenset({"no-eval", "no-implied-eval", "no-new-func", "no-script-url"})
PERFORMANCE_RULES = frozenset({"no-await-in-loop", "no-loop-func"})


def category(rule: str) -> str:
    if rule in COMPLEXITY_RULES:
        return "complexity"
    if rule in SECURITY_RULES or rule.startswith("security/"):
        return "security"
    if rule in PERFORMANCE_RULES:
        return "performance"
    return "correctness"


def read(report: Report, data: dict[str, Any]) -> None:
    report.tools["eslint"] = str(data.get("version") or "")
    for item in data.get("eslint") or ():
        rule = item.get("rule")
        start = int(item.get("line") or 1)
        end = max(start, int(item.get("end_line") or start))
        if item.get("fatal") or not rule:
            report.errors.append(f"eslint: line {start}: {item.get('message')}")
            continue
        severity: Severity = "high" if item.get("severity") == 2 else "medium"
        if category(rule) == "correctness" and severity == "medium":
            severity = "low"
        report.findings.append(Finding("eslint", str(rule), category(str(rule)), severity,
                                       str(item.get("message")), start, end))
    for block in data.get("outline") or ():
        report.blocks.append(Block(str(block["kind"]), str(block["name"]),
                                   int(block["line_start"]), int(block["line_end"])))
    report.blocks.sort(key=lambda b: (b.line_start, b.line_end))
