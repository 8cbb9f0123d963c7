"""What the analysers report: findings and blocks with line ranges from the tools."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnalysisType = Literal["explain", "complexity", "security", "performance"]
ANALYSIS_TYPES: tuple[str, ...] = ("explain", "complexity", "security", "performance")
Severity = Literal["high", "medium", "low", "info"]
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}

LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
}


def language_of(path: str) -> str | None:
    """The analysers' language of a file by its extension; None: no analyser for it."""
    dot = path.rfind(".")
    return LANGUAGES.get(path[dot:].lower()) if dot >= 0 else None


@dataclass
class Finding:
    tool: str
    rule: str
    category: str  # complexity, security, performance, correctness
    severity: Severity
    message: str
    line_start: int
    line_end: int
    id: str = ""
    explanation: str | None = None  # the model's words, when it gave some
    rank: int | None = None  # 1 = most important, by the model (None: not ranked)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Block:
    """A function, class or method, as the parser saw it: what "explain" explains."""

    kind: str
    name: str
    line_start: int
    line_end: int
    complexity: int | None = None
    id: str = ""
    explanation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    language: str
    findings: list[Finding] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)  # tool -> version
    errors: list[str] = field(default_factory=list)

    def select(self, analysis: str, lines: tuple[int, int] | None) -> Report:
        """The findings of one analysis type within ``lines`` (inclusive), numbered F1...,
        most severe first; blocks within the lines numbered B1..."""

        def inside(start: int, end: int) -> bool:
            return lines is None or (end >= lines[0] and start <= lines[1])

        wanted = {"complexity": {"complexity"}, "security": {"security"},
                  "performance": {"performance"}, "explain": set()}[analysis]
        findings = sorted(
            (f for f in self.findings if f.category in wanted and inside(f.line_start, f.line_end)),
            key=lambda f: (SEVERITY_ORDER[f.severity], f.line_start, f.rule),
        )
        for number, finding in enumerate(findings, 1):
            finding.id = f"F{number}"
        blocks = [b for b in self.blocks if inside(b.line_start, b.line_end)]
        for number, block in enumerate(blocks, 1):
            block.id = f"B{number}"
        return Report(self.language, findings, blocks, dict(self.metrics), dict(self.tools),
                      list(self.errors))
