"""A deployment's copy of the project's files, and the host-side Python install.

The copy reuses ``execution.workspace.Workspaces`` (live CRDT text of open documents,
stored text or objects otherwise) with the deployment's own directory as the root, so a
preview never shares a directory with runs or terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

from collab.ports import Documents
from execution.config import ExecutionConfig
from execution.workspace import Workspaces
from persistence.db import Database
from preview.logs import LogBuffer
from storage.objects import ObjectStore


class DeploymentFiles(Workspaces):
    def __init__(self, config: ExecutionConfig, db: Database, root: Path, *,
                 documents: Documents | None = None, objects: ObjectStore | None = None) -> None:
        super().__init__(config, db, documents=documents, objects=objects)
        self.root = root

    def path(self, project_id: uuid.UUID) -> Path:
        return self.root


class InstallFailed(RuntimeError):
    pass


async def install_python(requirements: tuple[str, ...], target: Path, logs: LogBuffer,
                         timeout_s: float) -> None:
    """``pip install --only-binary=:all: --target`` on the host: wheels only, so nothing of
    the project runs here (no setup.py); the sandbox sees ``target`` read-only."""
    if not requirements:
        return
    for requirement in requirements:
        if requirement.startswith("-") or any(ch in requirement for ch in "\n\r\0"):
            raise InstallFailed(f"requirement {requirement!r} is not allowed (options and "
                                "URLs are not installed)")
        if "://" in requirement or requirement.startswith((".", "/")) or " @ " in requirement:
            raise InstallFailed(f"requirement {requirement!r}: only names from the index")
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    await logs.line(f"$ pip install {' '.join(requirements)}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-input", "--only-binary=:all:", "--no-compile", "--target", str(target),
        "--python-version", "3.11", *requirements,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout_s):
            async for line in proc.stdout:
                await logs.write(line.decode(errors="replace"))
            code = await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    await logs.flush()
    if code != 0:
        raise InstallFailed(f"pip install failed (exit status {code})")
    await asyncio.to_thread(target.chmod, 0o755)
