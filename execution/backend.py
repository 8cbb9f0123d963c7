"""The one interface both backends implement, and the lookup of a backend by name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from execution.config import ExecutionConfig
from execution.sandbox import Limits, OutputSink


class ExecutionError(Exception):
    """A request the backend cannot take (unknown language...): a 4xx for the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ExecutionRequest:
    language: str
    source: str
    stdin: str
    limits: Limits
    # When running a project file: its path inside the workspace (the source is its text).
    source_path: str | None = None
    workdir: Path | None = None
    # Runs sharing a key share a sandbox uid (one per project).
    owner_key: str = "anonymous"
    # The project's environment variables, and the secret values among them (masked out
    # of the output by the execution hub).
    env: Mapping[str, str] = field(default_factory=dict)
    secret_values: tuple[str, ...] = ()
    # Set by the disk watcher when the workdir grows past the project's quota: stop the run.
    quota_exceeded: asyncio.Event | None = None


@dataclass
class ExecutionResult:
    status_id: int
    stdout: str = ""
    stderr: str = ""
    compile_output: str | None = None
    exit_code: int | None = None
    time_ms: float | None = None
    wall_ms: float | None = None
    memory_kb: int | None = None
    token: str | None = None
    message: str | None = None


class Backend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def languages(self) -> list[dict[str, Any]]: ...

    async def execute(self, request: ExecutionRequest, sink: OutputSink) -> ExecutionResult:
        """Run to completion; live output goes to ``sink`` as it is produced (if the
        backend can stream), the full output is in the result."""
        ...

    def health(self) -> dict[str, Any]: ...


def _local(config: ExecutionConfig) -> Backend:
    from execution.local import LocalBackend

    return LocalBackend(config)


def _judge0(config: ExecutionConfig) -> Backend:
    from execution.judge0 import Judge0Backend

    return Judge0Backend(config)


BACKENDS: dict[str, Callable[[ExecutionConfig], Backend]] = {
    "sandbox": _local,
    "local": _local,
    "judge0": _judge0,
}


def make_backend(config: ExecutionConfig) -> Backend:
    try:
        factory = BACKENDS[config.backend]
    except KeyError:
        raise ValueError(
            f"unknown execution backend {config.backend!r} (choose from {sorted(BACKENDS)})"
        ) from None
    return factory(config)
