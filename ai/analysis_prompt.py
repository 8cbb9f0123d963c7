"""The model's part of an analysis: explain and rank what the analysers found.

The prompt lists the code with line numbers and the findings (or, for "explain", the
blocks) by id; the model answers one line per id (``F3: ...``), most important first, and a
``Summary:`` line. Parsing keeps only ids that exist, so a model cannot add findings or line
numbers; what it leaves out keeps the analysers' order after what it ranked. A small model
that answers in another shape still yields the analysers' result (``ranked_by_model``
false) with its text as the summary.
"""

from __future__ import annotations

import re

from ai.analysers import Block, Finding, Report
from ai.providers.base import ChatMessage

MAX_CODE_CHARS = 12_000
ITEM_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**\s*([FB]\d+)\s*\**\s*[:.)\-–]\s*(.+?)\s*$")
SUMMARY_LINE = re.compile(r"^\s*\**\s*summary\s*\**\s*:\s*(.+)$", re.IGNORECASE)

SYSTEM = (
    "You review the output of static analysers for a colleague. Never report problems of "
    "your own and never write line numbers: refer to the items only by their ids."
)
ASK = {
    "explain": "Explain what each block does, in execution order of importance.",
    "complexity": "Rank the complexity findings by how much they hurt reading and changing "
                  "the code, and say how to simplify each.",
    "security": "Rank the security findings by real risk in this code (say when one is a "
                "false alarm), and say how to fix each.",
    "performance": "Rank the performance findings by likely cost at run time, and say how to "
                   "fix each.",
}


def numbered(text: str, first_line: int = 1) -> str:
    lines = text.splitlines()
    width = len(str(first_line + len(lines)))
    body = "\n".join(f"{n:>{width}} | {line}" for n, line in enumerate(lines, first_line))
    if len(body) > MAX_CODE_CHARS:
        body = body[:MAX_CODE_CHARS] + "\n… (truncated)"
    return body


def describe(item: Finding | Block) -> str:
    if isinstance(item, Finding):
        return (f"{item.id} [{item.tool} {item.rule}, {item.severity}, lines {item.line_start}"
                f"-{item.line_end}] {item.message}")
    extra = f", complexity {item.complexity}" if item.complexity is not None else ""
    return f"{item.id} {item.kind} {item.name} (lines {item.line_start}-{item.line_end}{extra})"


def items_of(report: Report, analysis: str) -> list[Finding] | list[Block]:
    return report.blocks if analysis == "explain" else report.findings


def build(
    path: str, text: str, report: Report, analysis: str, first_line: int = 1
) -> list[ChatMessage] | None:
    """The prompt, or None when there is nothing for the model to rank or explain."""
    items = items_of(report, analysis)
    if not items:
        return None
    listing = "\n".join(describe(item) for item in items)
    prefix = "B" if analysis == "explain" else "F"
    question = (
        f"File {path} ({report.language}):\n```\n{numbered(text, first_line)}\n```\n\n"
        f"Items:\n{listing}\n\n{ASK[analysis]} Answer with one line per item worth "
        f"attention, most important first, exactly as `{prefix}<n>: <one or two sentences>`, "
        "then one line `Summary: <two sentences at most>`."
    )
    return [ChatMessage("system", SYSTEM), ChatMessage("user", question)]


def apply(report: Report, analysis: str, answer: str) -> tuple[bool, str | None]:
    """Write the model's explanations and ranks into the report's items, reorder them.

    Returns (ranked_by_model, summary)."""
    items = items_of(report, analysis)
    by_id = {item.id: item for item in items}
    order: list[str] = []
    summary: str | None = None
    for line in answer.splitlines():
        found = SUMMARY_LINE.match(line)
        if found:
            summary = found.group(1).strip()
            continue
        found = ITEM_LINE.match(line)
        if found and found.group(1) in by_id and found.group(1) not in order:
            order.append(found.group(1))
            by_id[found.group(1)].explanation = found.group(2).strip()
    if not order:
        return False, summary or (answer.strip()[:2000] or None)
    ranked = [by_id[item_id] for item_id in order]
    rest = [item for item in items if item.id not in order]
    for rank, item in enumerate(ranked, 1):
        if isinstance(item, Finding):
            item.rank = rank
    items[:] = ranked + rest  # type: ignore[assignment]
    return True, summary
