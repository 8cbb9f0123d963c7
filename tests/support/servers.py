"""Real app servers for tests: uvicorn in this event loop, or a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from server.app import create_app
from server.serving import uvicorn_options
from server.settings import Settings
from tests.support.net import free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveServer:
    """A uvicorn server running inside the test's event loop."""

    settings: Settings
    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)


async def start_live_server(settings: Settings) -> LiveServer:
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    live = LiveServer(settings, app, server, task, port)
    await wait_http_ok(live.url + "/healthz")
    return live


@dataclass
class ProcessServer:
    """``python -m server serve`` in its own process (for SIGTERM / SIGKILL tests)."""

    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)
    python: str = sys.executable  # another environment's interpreter, to serve from it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        log = self.log_path.open("ab")
        self._log = log
        self.proc = subprocess.Popen(
            [self.python, "-m", "server", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await wait_http_ok(self.url + "/healthz", timeout_s)
        except TimeoutError:
            self.kill()
            raise

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    async def terminate(self, timeout_s: float = 20.0) -> int | None:
        self.signal(signal.SIGTERM)
        if not self.proc:
            return None
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a server process built from test settings."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "JWT_SECRET": settings.jwt_secret,
            "DATA_DIR": str(settings.data_dir),
            "ALLOWED_ORIGINS": ",".join(settings.allowed_origins),
            "REDIS_PREFIX": settings.redis_prefix,
            "AI_EMBEDDED": "0",
            "LOG_LEVEL": "warning",
        }
    )
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    env.update(extra or {})
    return env
