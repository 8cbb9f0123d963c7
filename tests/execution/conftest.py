"""Fixtures for the execution tests (``exec_root`` comes from tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from execution.config import ExecutionConfig
from execution.local import LocalBackend


@pytest.fixture
def exec_config(exec_root: Path) -> ExecutionConfig:
    return ExecutionConfig(
        workdir_root=exec_root / "workspaces",
        storage_root=exec_root / "storage",
        cpu_time_s=2.0,
        wall_time_s=4.0,
        memory_kb=256 * 1024,
        max_processes=32,
        max_file_size_kb=1024,
        max_output_bytes=64 * 1024,
    )


@pytest.fixture
async def local_backend(exec_config: ExecutionConfig) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(exec_config)
    await backend.start()
    await backend.ready()
    yield backend
    await backend.close()


@pytest.fixture
def exec_config_json(exec_config: ExecutionConfig) -> str:
    """The config's overridden fields as JSON, for a launcher in another process."""
    return json.dumps(
        {
            "workdir_root": str(exec_config.workdir_root),
            "storage_root": str(exec_config.storage_root),
            "max_output_bytes": exec_config.max_output_bytes,
        }
    )
