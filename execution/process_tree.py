"""Reaping a sandbox and stopping it so that its CPU time is still counted.

bubblewrap (the launcher, our child) waits for the sandbox's PID 1, and PID 1 waits for the
program, so the launcher's rusage covers every process that was *waited for*. Killing the
launcher first (the old way) loses all of it: PID 1 dies of ``--die-with-parent``, the kernel
kills the rest of the PID namespace and auto-reaps it, and nothing is added up. A run killed
at the wall-clock limit then recorded the launcher's own few milliseconds instead of the
~10 s its busy loop used.

``stop_sandbox`` stops in the order that keeps the accounting: every process of the sandbox
but PID 1 and PID 2 (the program) is SIGKILLed until none is left running (a zombie stays
with its living parent, or becomes PID 1's), then the program, then PID 1: the program's
parent reaps it with its children's times, and on PID 1's way out the kernel reaps the
remaining zombies into PID 1's child times (``zap_pid_ns_processes`` -> ``wait4``); the
launcher reaps PID 1, and we reap the launcher. The rusage read after that covers the
whole tree. (A process that dies after PID 1 has begun to exit is reaped unseen: hence the
order.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from pathlib import Path

# A fork bomb can add processes while we kill: bounded by RLIMIT_NPROC, so a few passes do.
KILL_PASSES_DEADLINE_S = 1.0
LAUNCHER_EXIT_S = 2.0


def kill_group(pid: int) -> None:
    """SIGKILL the launcher's process group; the sandbox's PID 1 dies with it and the
    kernel then kills every process left in the sandbox's PID namespace."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


class ProcessReaper:
    """Waits for one child through a pidfd (no thread, no SIGCHLD handler) and keeps its
    rusage. asyncio's and uvloop's watchers only reap the pids they spawned themselves."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self._done = asyncio.get_running_loop().create_future()
        self._pidfd = os.pidfd_open(pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._ready)

    def _ready(self) -> None:
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, rusage = self.pid, 0, None  # type: ignore[assignment]
        if pid == 0:
            return
        self.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = rusage
        self._close()
        if not self._done.done():
            self._done.set_result(None)

    def _close(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    @property
    def done(self) -> bool:
        return self._done.done()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            return False
        return True


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _running(pid: int) -> bool:
    """Alive and not yet a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] not in {"Z", "X"}


def sandbox_init(launcher_pid: int) -> int | None:
    """Host pid of the sandbox's PID 1: the launcher's only child (None once it is gone)."""
    children = _children(launcher_pid)
    return children[0] if children else None


def kill_descendants(root_pid: int, spare: frozenset[int] = frozenset()) -> None:
    """SIGKILL every descendant of ``root_pid`` but ``spare`` (their own descendants are
    not spared) until none is left running. Blocking: call it in a thread."""
    deadline = time.monotonic() + KILL_PASSES_DEADLINE_S
    while time.monotonic() < deadline:
        stack, seen = [root_pid], set()
        while stack:
            for child in _children(stack.pop()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        alive = [pid for pid in seen - spare if _running(pid)]
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _namespace_pid(pid: int) -> int | None:
    """The pid of a host process inside its own (innermost) PID namespace."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _first_child(init_pid: int) -> frozenset[int]:
    """PID 2 of the namespace: what PID 1 started (the program, or a terminal's shell)."""
    return frozenset(pid for pid in _children(init_pid) if _namespace_pid(pid) == 2)


def kill_all_but_init(init_pid: int) -> None:
    """Kill the sandbox's processes so that PID 1 accounts for all of them. PID 1 exits
    as soon as its own child (PID 2) dies, and whatever dies after that is reaped unseen:
    so first everything but PID 2, until only zombies are left (they stay with their living
    parents, or become PID 1's), then PID 2. Blocking: call it in a thread."""
    program = _first_child(init_pid)
    kill_descendants(init_pid, spare=program)
    for pid in program:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_PASSES_DEADLINE_S
    while any(_running(pid) for pid in program) and time.monotonic() < deadline:
        time.sleep(0.005)


def stop_all_but_shell(launcher_pid: int) -> None:
    """A terminal's sandbox (bubblewrap's init is PID 1, the shell PID 2): kill every
    process but those two. Blocking: call it in a thread."""
    init = sandbox_init(launcher_pid)
    if init is not None:
        kill_descendants(init, spare=_first_child(init))


async def stop_sandbox(launcher_pid: int, reaper: ProcessReaper) -> None:
    """Stop a sandbox and reap it with its CPU time accounted (see the module docstring);
    falls back to killing the launcher's group if the orderly way does not finish."""
    if reaper.done:
        return
    init = await asyncio.to_thread(sandbox_init, launcher_pid)
    if init is not None:
        await asyncio.to_thread(kill_all_but_init, init)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(init, signal.SIGKILL)
        if await reaper.wait(LAUNCHER_EXIT_S):
            return
    kill_group(launcher_pid)
    await reaper.wait()
