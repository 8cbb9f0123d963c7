"""``python -m server.cluster`` as a subprocess for tests: its environment, start, wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_JWT_SECRET
from tests.support.net import wait_http_ok
from tests.support.servers import REPO


def start_cluster_command(
    base: int, database_url: str, data_dir: Path, log_path: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Two nodes behind the round-robin proxy on ``base`` (nodes on base+1, base+2)."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=TEST_JWT_SECRET,
        DATA_DIR=str(data_dir),
        AI_EMBEDDED="0",
        LOG_LEVEL="warning",
        **(extra_env or {}),
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "server.cluster", "--nodes", "2", "--port", str(base)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


async def wait_cluster_ready(base: int, log_path: Path) -> None:
    try:
        await wait_http_ok(f"http://127.0.0.1:{base}/healthz", 90)
    except TimeoutError as exc:
        raise AssertionError(f"cluster not ready: {log_path.read_text()[-3000:]}") from exc
