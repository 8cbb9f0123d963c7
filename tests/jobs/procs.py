"""Real worker processes (``python -m server worker``) for the queue's tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class WorkerProcess:
    """One worker process; its log lines are collected, ``ready`` is awaited from them."""

    def __init__(self, database_url: str, name: str, data_dir: Path, jobs: str,
                 **env: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Event()
        environ = {
            **os.environ,
            "DATABASE_URL": database_url,
            "INSTANCE_ID": name,
            "DATA_DIR": str(data_dir),
            "JWT_SECRET": "worker-test-secret-0123456789-0123456789",
            "LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "worker", "--jobs", jobs],
            cwd=REPO_ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if "jobs worker" in line and " ready: " in line:
                self._ready.set()

    async def ready(self, timeout: float = 60) -> None:
        ok = await asyncio.to_thread(self._ready.wait, timeout)
        assert ok, f"{self.name} not ready:\n" + "\n".join(self.lines[-30:])

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def exited(self, timeout: float) -> int:
        """The exit code, waiting at most ``timeout`` seconds."""
        return await asyncio.to_thread(self.proc.wait, timeout)

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.exited(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await self.exited(5)


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float,
                     what: str) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
