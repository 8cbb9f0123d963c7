"""Real static analysers whose findings the assistant explains and ranks.

Python: ruff (correctness, complexity C901, performance PERF/C4), radon (cyclomatic
complexity per block, maintainability index) and bandit (security). JavaScript and
TypeScript: ESLint with a fixed config (complexity, security via eslint-plugin-security,
performance, correctness) and an outline from the TypeScript ESTree parser, both in the
Node dir beside this file (``npm ci`` there; ``make node-deps`` does it).

Every tool runs as a subprocess on a copy of the text in a private temporary directory (no
user config is read, the code is parsed, never run), concurrently, each with a timeout; a
tool that is missing or fails is reported in ``errors`` and the others still count.

Line numbers come from the tools only: a ``Finding`` or ``Block`` is what a tool reported,
with its 1-based line range; the model refers to them by id.
"""

from __future__ import annotations

from ai.analysers.model import AnalysisType, Block, Finding, Report, language_of
from ai.analysers.run import analyse

__all__ = ["AnalysisType", "Block", "Finding", "Report", "analyse", "language_of"]
