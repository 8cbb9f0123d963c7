"""Processes under measurement: pinned start, readiness, CPU (utime+stime) and RSS from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Niceness of everything measured (servers, their databases, the load generator). The machine is
# shared; a negative value (root only) keeps other work from stretching the latency figures.
PRIORITY = {"nice": 0}
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all threads), 0.0 if it is gone."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a live process in seconds: user space vs the kernel's work for it."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        raw = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return 0
    return int(raw.split()[1]) * PAGE


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (postgres backends of a postmaster)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants (a server's worker processes)."""
    found = [pid]
    for child in children(pid):
        found.extend(family(child))
    return found


def pinned_cmd(cmd: Sequence[str], core: int) -> list[str]:
    """``cmd`` under ``taskset -c core`` (and ``nice`` when a priority is set)."""
    prefix = ["nice", "-n", str(PRIORITY["nice"])] if PRIORITY["nice"] else []
    return [*prefix, "taskset", "-c", str(core), *cmd]


def pin(pids: Iterable[int], core: int) -> None:
    """Moves running processes (all threads) to ``core`` at the measured priority."""
    for pid in pids:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(core), str(pid)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        prioritize(pid)


def prioritize(pid: int) -> None:
    """Applies PRIORITY to a process and to its autogroup (with autogroup scheduling, plain
    nice only ranks processes within one session, and every session gets an equal share)."""
    if not PRIORITY["nice"]:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, PRIORITY["nice"])
        Path(f"/proc/{pid}/autogroup").write_text(str(PRIORITY["nice"]))
    except OSError:
        pass


@dataclass
class Group:
    """A named set of processes whose CPU and RSS are summed (e.g. 'server', 'db')."""

    name: str
    pid_source: Callable[[], list[int]]  # evaluated at each sample (backends come and go)

    def pids(self) -> list[int]:
        return self.pid_source()

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def system_cpu(self) -> float:
        """The kernel's share of ``cpu()`` (socket writes, wake-ups, page faults)."""
        return sum(cpu_split(pid)[1] for pid in self.pids())

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids())


def wait_tcp(
    port: int,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(interval_s)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def wait_answer(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers 200, asking again at once when the request fails (a server
    that listens before its startup holds the request until it can answer it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, deadline - time.monotonic())) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def wait_http_ok(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


@dataclass
class Pinned:
    """A process started under ``taskset -c CORE`` with its output in a log file."""

    name: str
    cmd: Sequence[str]
    core: int
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # An HTTP path that answers 200 once the process serves; None: serving = listening.
    ready_path: str | None = None

    def start(self) -> Pinned:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                pinned_cmd(self.cmd, self.core),
                cwd=self.cwd,
                env=dict(self.env) if self.env is not None else None,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        prioritize(self.proc.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
