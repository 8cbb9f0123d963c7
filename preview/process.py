"""One preview app in the sandbox: its own network namespace, reached by a Unix socket.

The app listens on ``127.0.0.1:$PORT`` inside a network namespace that holds nothing but
loopback (bubblewrap ``--unshare-all`` without ``--share-net``). Beside it, ``relay.py``
accepts on ``/run/icreate/s``, a directory bind-mounted from ``<deployment>/run`` on the
host, and pipes each connection to the app. The server connects to that socket file; no
host port exists, so another preview, a run or a terminal cannot reach the app, and the
app cannot reach the host's PostgreSQL or Redis (its loopback is not the host's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from execution.process_tree import ProcessReaper, stop_sandbox
from execution.sandbox import WORKSPACE, Bind, Identity, Limits, Sandbox
from preview.logs import LogBuffer, pump
from preview.spec import APP_PORT, AppSpec

RELAY = Path(__file__).with_name("relay.py")
SANDBOX_RUN = "/run/icreate"
SANDBOX_RELAY = "/opt/icreate/relay.py"
SANDBOX_DEPS = "/opt/icreate/python"
SOCKET_NAME = "s"
MAX_SOCKET_PATH = 107  # sun_path


class AppFailed(RuntimeError):
    """The app exited or never answered on its port."""


@dataclass(frozen=True)
class Layout:
    """A deployment's directories on the host: ``app`` (the files, the sandbox's
    /workspace), ``deps`` (Python packages, read-only) under ``root``; ``run`` (the relay's
    socket) under the short socket root (``sun_path`` holds 107 bytes)."""

    root: Path
    run: Path

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def deps(self) -> Path:
        return self.root / "deps"

    @property
    def socket(self) -> Path:
        return self.run / SOCKET_NAME

    def prepare(self, uid: int | None) -> None:
        """Blocking. Fresh ``run`` dir owned by the sandbox uid, unreadable to others."""
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise AppFailed(f"socket path too long ({self.socket})")
        for path in (self.root, self.app):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o711)
        self.run.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        self.run.chmod(0o700)
        if uid is not None:
            os.chown(self.run, uid, uid)


def limits_for(memory_kb: int, cpu_time_s: float, processes: int) -> Limits:
    return Limits(cpu_time_s=cpu_time_s, wall_time_s=0, memory_kb=memory_kb,
                  processes=processes, file_size_kb=256 * 1024, output_bytes=0)


class AppProcess:
    def __init__(self, sandbox: Sandbox, layout: Layout, spec: AppSpec, identity: Identity,
                 limits: Limits, env: dict[str, str], logs: LogBuffer) -> None:
        self.sandbox = sandbox
        self.layout = layout
        self.spec = spec
        self.identity = identity
        self.limits = limits
        self.env = env
        self.logs = logs
        self.pid: int | None = None
        self.reaper: ProcessReaper | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.reaper is not None and not self.reaper.done

    async def start(self, timeout_s: float) -> None:
        """Start the app and wait until it answers HTTP on its socket (raises AppFailed)."""
        await asyncio.to_thread(self.layout.prepare, self.identity.uid)
        binds = [Bind(self.layout.app, WORKSPACE, writable=True),
                 Bind(self.layout.run, SANDBOX_RUN, writable=True),
                 Bind(RELAY, SANDBOX_RELAY)]
        env = {**self.env, "PORT": str(APP_PORT), "HOST": "127.0.0.1",
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        if self.layout.deps.is_dir():
            binds.append(Bind(self.layout.deps, SANDBOX_DEPS))
            env["PYTHONPATH"] = SANDBOX_DEPS
        script = (f"python3 {SANDBOX_RELAY} {SANDBOX_RUN}/{SOCKET_NAME} {APP_PORT} &\n"
                  f"{self.spec.run}\n")
        proc = self.sandbox.spawn_service(["/bin/sh", "-c", script], binds=binds,
                                          limits=self.limits, identity=self.identity, env=env)
        proc.returncode = 0  # reaped by the ProcessReaper, not by Popen
        self.pid = proc.pid
        self.reaper = ProcessReaper(proc.pid)
        assert proc.stdout is not None
        fd = os.dup(proc.stdout.fileno())
        proc.stdout.close()
        self._pump = asyncio.create_task(self._read(fd), name=f"preview-log-{proc.pid}")
        try:
            await self._until_ready(timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _read(self, fd: int) -> None:
        try:
            await pump(fd, self.logs)
        finally:
            os.close(fd)

    async def _until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                code = self.reaper.returncode if self.reaper else None
                raise AppFailed(f"the app exited (status {code}) before it answered")
            if await answers_http(self.layout.socket):
                return
            await asyncio.sleep(0.05)
        raise AppFailed(f"the app did not answer on $PORT ({APP_PORT}) within {timeout_s:g} s")

    async def stop(self) -> None:
        if self.pid is not None and self.reaper is not None:
            await stop_sandbox(self.pid, self.reaper)
        if self._pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._pump), 2.0)
            self._pump.cancel()


async def answers_http(socket_path: Path) -> bool:
    """True when something answers an HTTP request through the relay."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket_path)), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"HEAD / HTTP/1.1\r\nHost: preview\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(5), 2.0)
        return head == b"HTTP/"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
