"""The embedded model's runtime (the ``ai`` extra), installed in the background.

llama-cpp-python is published only as source: its first install compiles llama.cpp, about
5 minutes on two cores (20 while other work runs), and no prebuilt package on PyPI or in
Debian serves the same OpenAI-compatible API. So ``make run`` installs the app without it
and serves at once; when the embedded model is configured and its runtime is missing, the
embedded slot starts a ``RuntimeInstaller``: one owned child,
``python -m ai.runtime_install REQUIREMENT...``, which

- takes an exclusive lock beside the interpreter, so two processes of one environment
  (``make cluster``'s nodes) never run pip into it at once, and checks again under it;
- runs pip at a lower CPU priority (the server keeps answering while it compiles), with
  ``DATA_DIR/logs/ai-install.log`` as its output;
- takes its whole process group down (pip, cmake, the compilers) on SIGTERM, and gets
  SIGTERM itself when the server dies.

``state``: ``installing`` -> ``installed`` (then the model starts) or ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ai.child_env import child_env
from ai.embedded import die_with_parent

log = logging.getLogger(__name__)

DISTRIBUTION = "icreate"
RUNTIME_MODULE = "llama_cpp"
_AI_EXTRA = re.compile(r"""extra\s*==\s*["']ai["']""")
NICENESS = 10
STOP_TIMEOUT_S = 5.0
# What pip and a source build may need from the environment (an index, a proxy, a cache,
# compiler flags), and nothing else.
INSTALL_NAMES = frozenset({
    "VIRTUAL_ENV", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CC", "CXX", "CFLAGS",
    "CXXFLAGS", "LDFLAGS", "MAKEFLAGS", "FORCE_CMAKE",
})
INSTALL_PREFIXES = ("PIP_", "CMAKE_", "XDG_")


def runtime_installed() -> bool:
    importlib.invalidate_caches()
    return importlib.util.find_spec(RUNTIME_MODULE) is not None


def ai_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """The ``ai`` extra's requirements, as the installed app's metadata lists them."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found = []
    for item in requires:
        requirement, _, marker = item.partition(";")
        if _AI_EXTRA.search(marker):
            found.append(requirement.strip())
    return found


def _lower_priority() -> None:
    """In the child before exec: nicer than the server, and gone when the server is."""
    os.nice(NICENESS)
    die_with_parent()


class RuntimeInstaller:
    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / "ai-install.log"
        self.state = "idle"
        self.error: str | None = None
        self.install_s: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, on_installed: Callable[[], None]) -> None:
        """Install in the background; ``on_installed`` runs once the runtime imports."""
        if self._task is None:
            self.state = "installing"
            self._task = asyncio.create_task(self._run(on_installed), name="ai-runtime-install")

    async def _run(self, on_installed: Callable[[], None]) -> None:
        started = time.monotonic()
        requirements = await asyncio.to_thread(ai_requirements)
        if not requirements:
            self._fail(f"the {DISTRIBUTION} package's ai extra is unknown here: "
                       "install it with pip install '.[ai]'")
            return
        log.info("installing the embedded model's runtime in the background (%s); log: %s",
                 " ".join(requirements), self.log_path)
        try:
            code = await self._install(requirements)
        except OSError as exc:
            self._fail(f"could not start pip: {exc}")
            return
        if code != 0 or not await asyncio.to_thread(runtime_installed):
            self._fail(f"pip exited with status {code}: see {self.log_path}")
            return
        self.state = "installed"
        self.install_s = round(time.monotonic() - started, 1)
        log.info("embedded model runtime installed in %.0fs", self.install_s)
        on_installed()

    async def _install(self, requirements: list[str]) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output:
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pip install "
                         f"{' '.join(requirements)}\n".encode())
            output.flush()
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ai.runtime_install", *requirements,
                stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                env=child_env(os.environ, INSTALL_NAMES, INSTALL_PREFIXES),
                start_new_session=True, preexec_fn=_lower_priority,
            )
        return await self._proc.wait()

    def _fail(self, message: str) -> None:
        self.state = "failed"
        self.error = message
        log.warning("embedded model runtime not installed: %s", message)

    async def stop(self) -> None:
        """Ends the owning task, then the install (its whole process group)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self.state == "installing":
            self.state = "stopped"


def _lock_path() -> Path:
    prefix = Path(sys.prefix)
    if os.access(prefix, os.W_OK):
        return prefix / ".icreate-ai-install.lock"
    return Path(tempfile.gettempdir()) / f"icreate-ai-install-{os.getuid()}.lock"


def _stop_group(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.killpg(os.getpgrp(), signum)


def main(requirements: list[str]) -> int:
    """The child: lock, check again, pip install. Run in its own process group."""
    signal.signal(signal.SIGTERM, _stop_group)
    with _lock_path().open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if runtime_installed():
            print(f"{RUNTIME_MODULE} is already installed", flush=True)
            return 0
        command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                   "--progress-bar", "off", *requirements]
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
