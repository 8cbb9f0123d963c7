"""Running the analysers as subprocesses (no blocking call on the event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ai.analysers import javascript, python
from ai.analysers.model import Report, language_of

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 60.0
NODE_DIR = Path(__file__).resolve().parent / "node"


async def run_tool(
    args: list[str], *, stdin: bytes | None = None, cwd: Path | None = None,
    timeout_s: float = TOOL_TIMEOUT_S,
) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr); the process is killed at the timeout (TimeoutError)."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdin=asyncio.subprocess.PIPE if stdin is not None else
        asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


def python_exe() -> str:
    return sys.executable


def node_exe() -> str | None:
    return shutil.which("node")


async def analyse(path: str, text: str) -> Report:
    """Every analyser of the file's language over ``text`` (named ``path``)."""
    language = language_of(path)
    if language is None:
        return Report("unknown", errors=[f"no analyser for {path}"])
    report = Report(language)
    if language == "python":
        with tempfile.TemporaryDirectory(prefix="icreate-analysis-") as tmp:
            target = Path(tmp) / "code.py"
            await asyncio.to_thread(target.write_text, text, "utf-8")
            await python.run_all(report, target, run_tool, python_exe())
    else:
        node = node_exe()
        if node is None or not (NODE_DIR / "node_modules").is_dir():
            report.errors.append("eslint: not installed (npm ci in ai/analysers/node)")
            return report
        payload: dict[str, Any] = {"path": path, "text": text}
        try:
            code, out, err = await run_tool([node, str(NODE_DIR / "analyse.mjs")],
                                            stdin=json.dumps(payload).encode(), cwd=NODE_DIR)
        except TimeoutError:
            report.errors.append("eslint: timed out")
            return report
        if code != 0:
            report.errors.append(f"eslint: exit {code}: {err.decode(errors='replace')[:300]}")
            return report
        javascript.read(report, json.loads(out))
    return report
