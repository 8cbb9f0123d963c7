"""The local sandbox: bubblewrap started with an empty environment, as an unprivileged uid,
with rlimits, a wall-clock deadline, a reader-side output cap and a whole-tree stop that
keeps every process's CPU time in the run's account (``execution.process_tree``).

Why over 400 lines: the bubblewrap command line, its rlimits and the run's supervision
(deadline, output cap, tree stop) must be read together to check the isolation; the process
tree and volumes are their own modules.

Limit mechanism: cgroup v2 (``memory.max``/``pids.max``) needs a delegated writable
subtree; where there is none (this includes hybrid v1 hosts) the limits are rlimits:
RLIMIT_DATA for memory (RLIMIT_AS breaks Node, the JVM and Go, which reserve large
address ranges; RLIMIT_DATA counts only writable private memory, so it works for all of
them), RLIMIT_NPROC for processes (effective because the uid is not root), RLIMIT_CPU,
RLIMIT_FSIZE. ``health()`` says which mechanism is in force.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import fcntl
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execution.config import ExecutionConfig
from execution.process_tree import ProcessReaper, stop_sandbox

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
WORKSPACE = "/workspace"
BUILD = "/build"
# System directories bound read-only (symlinks such as /bin -> usr/bin are recreated).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC_ENTRIES = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/java-17-openjdk",
    "/etc/java-21-openjdk",
    "/etc/ssl/openssl.cnf",
)
NETWORK_ETC = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates"
)
READ_CHUNK = 65536
INIT = "/usr/bin/timeout"
PIPE_DEFAULT_BYTES = 65536

# (stream name, decoded text) for live output.
OutputSink = Callable[[str, str], Awaitable[None]]


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


def missing_bwrap(path: str) -> str:
    return f"bubblewrap ({path}) not found: apt-get install bubblewrap"


@dataclass(frozen=True)
class Limits:
    cpu_time_s: float
    wall_time_s: float
    memory_kb: int
    processes: int
    file_size_kb: int
    output_bytes: int

    @classmethod
    def default(cls, config: ExecutionConfig) -> Limits:
        return cls(
            cpu_time_s=config.cpu_time_s,
            wall_time_s=config.wall_time_s,
            memory_kb=config.memory_kb,
            processes=config.max_processes,
            file_size_kb=config.max_file_size_kb,
            output_bytes=config.max_output_bytes,
        )

    @classmethod
    def for_compile(cls, config: ExecutionConfig) -> Limits:
        return cls(
            cpu_time_s=config.compile_cpu_time_s,
            wall_time_s=config.compile_wall_time_s,
            memory_kb=config.compile_memory_kb,
            processes=max(config.max_processes, 128),
            file_size_kb=max(config.max_file_size_kb, 256 * 1024),
            output_bytes=config.max_output_bytes,
        )


@dataclass(frozen=True)
class Bind:
    source: Path
    target: str
    writable: bool = False


@dataclass
class RunResult:
    exit_code: int | None
    term_signal: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    output_capped: bool = False
    cpu_ms: float = 0.0
    wall_ms: float = 0.0
    memory_kb: int = 0
    cpu_exceeded: bool = False
    stopped: bool = False  # by the caller's ``stop`` event (a disk quota watcher)


@dataclass(frozen=True)
class Identity:
    """Who the sandbox runs as on the host (None: keep ours, we are not root)."""

    uid: int | None
    gid: int | None


def _rlimit_setter(limits: Limits, *, cpu: bool = True) -> Callable[[], None]:
    """A preexec function: runs in the child after setuid, only calls setrlimit."""
    cpu_soft = max(1, int(limits.cpu_time_s + 0.999))
    memory = limits.memory_kb * 1024
    fsize = limits.file_size_kb * 1024
    nproc = limits.processes

    def apply() -> None:
        if cpu:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_soft, cpu_soft + 1))
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _tty_setter(limits: Limits) -> Callable[[], None]:
    """preexec for a PTY child: rlimits (no CPU limit: shells live long) + controlling tty."""
    set_limits = _rlimit_setter(limits, cpu=False)

    def apply() -> None:
        set_limits()
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return apply


class Sandbox:
    """Builds bubblewrap command lines and runs them under limits."""

    def __init__(self, config: ExecutionConfig) -> None:
        self.config = config
        found = shutil.which(config.bwrap_path)
        self.bwrap = found or config.bwrap_path
        self.is_root = os.geteuid() == 0
        self.mechanism = "rlimit"
        self.mechanism_reason = self._cgroup_reason()
        self.extra_ro_binds: list[Bind] = []
        # Known at once when the binary is missing; else found by ``check`` on first use.
        self.problem: str | None = None if found else missing_bwrap(config.bwrap_path)

    @staticmethod
    def _cgroup_reason() -> str:
        controllers = Path("/sys/fs/cgroup/cgroup.controllers")
        if not controllers.exists():
            return "no cgroup v2 hierarchy at /sys/fs/cgroup (v1 or hybrid): rlimits in force"
        return "cgroup v2 present but no delegated subtree configured: rlimits in force"

    def health(self) -> dict[str, Any]:
        return {
            "bwrap": self.bwrap,
            "available": self.problem is None,
            "problem": self.problem,
            "limit_mechanism": self.mechanism,
            "limit_note": self.mechanism_reason,
            "memory_limit": "RLIMIT_DATA",
            "process_limit": "RLIMIT_NPROC (unprivileged uid)" if self.is_root else "RLIMIT_NPROC",
        }

    async def check(self, probe_dir: Path | None = None) -> None:
        """Run ``true`` in the sandbox once, with ``probe_dir`` (beside the workdirs) bound as
        the workspace: it fails if a parent directory is not traversable by the sandbox uid.
        Remember why it failed, if it did."""
        if self.problem is not None:
            return
        binds = [Bind(probe_dir, WORKSPACE)] if probe_dir is not None else []
        try:
            identity = self.identity_for(self.config.sandbox_uid_count - 1)
            result = await self.run(["/bin/true"], binds=binds,
                                    limits=Limits.default(self.config), identity=identity,
                                    cwd="/")
        except OSError as exc:
            self.problem = f"bubblewrap cannot start: {exc}"
            return
        if result.exit_code != 0:
            self.problem = "bubblewrap failed: " + result.stderr.decode(errors="replace")[:300]

    def identity_for(self, slot: int) -> Identity:
        if not self.is_root:
            return Identity(None, None)
        uid = self.config.sandbox_uid_base + slot % self.config.sandbox_uid_count
        return Identity(uid, uid)

    # -- command line -------------------------------------------------------------------

    def argv(
        self,
        command: Sequence[str],
        *,
        binds: Sequence[Bind],
        network: bool = False,
        new_session: bool = True,
        as_pid_1: bool = False,
        env_fd: int | None = None,
        cwd: str = WORKSPACE,
        tmp_size_bytes: int = 64 * 1024 * 1024,
    ) -> list[str]:
        args = [self.bwrap, "--unshare-all"]
        if network:
            args.append("--share-net")
        args += ["--die-with-parent"]
        if new_session:
            args.append("--new-session")
        if as_pid_1:
            args.append("--as-pid-1")
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for entry in ETC_ENTRIES + (NETWORK_ETC if network else ()):
            if os.path.lexists(entry):
                args += ["--ro-bind", entry, entry]
        for bind in self.extra_ro_binds:
            args += ["--ro-bind", str(bind.source), bind.target]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--size", str(tmp_size_bytes), "--tmpfs", "/tmp"]
        for bind in binds:
            args += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]
        # The root is bubblewrap's own tmpfs: make it (and the mount points in it, /etc
        # included) read-only so nothing but /tmp and /workspace is writable.
        args += ["--remount-ro", "/"]
        if env_fd is not None:
            # The program's environment (``environment_args``) is read from this pipe: on
            # the command line it would be readable by every process of the host in
            # /proc/<pid>/cmdline, and it holds the project's secrets.
            args += ["--args", str(env_fd)]
        args += ["--chdir", cwd, "--", *command]
        return args

    # -- batch runs ---------------------------------------------------------------------

    async def run(
        self,
        command: Sequence[str],
        *,
        binds: Sequence[Bind],
        limits: Limits,
        identity: Identity,
        stdin: bytes = b"",
        sink: OutputSink | None = None,
        env: dict[str, str] | None = None,
        cwd: str = WORKSPACE,
        stop: asyncio.Event | None = None,
    ) -> RunResult:
        # PID 1 is coreutils' ``timeout 0`` (no timeout): it waits for the program, so the
        # launcher's rusage covers it, exits 128+N when it dies of signal N (an init cannot
        # re-raise it), prints nothing, and leaves the program normal signal semantics.
        with environment_pipe(env) as env_fd:
            argv = self.argv([INIT, "0", *command], binds=binds, env_fd=env_fd, cwd=cwd,
                             as_pid_1=True)
            proc = _spawn(
                argv,
                identity,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec=_rlimit_setter(limits),
                pass_fds=(env_fd,),
            )
        started = time.monotonic()
        reaper = ProcessReaper(proc.pid)
        try:
            return await _supervise(proc, reaper, limits, stdin, sink, started,
                                    stop or asyncio.Event())
        finally:
            # Normally a no-op (reaped already); on cancellation the run still stops here.
            await stop_sandbox(proc.pid, reaper)
            proc.returncode = reaper.returncode
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    # -- long-lived services (previews) -------------------------------------------------

    def spawn_service(
        self,
        command: Sequence[str],
        *,
        binds: Sequence[Bind],
        limits: Limits,
        identity: Identity,
        env: dict[str, str],
    ) -> subprocess.Popen[bytes]:
        """A server in its own network namespace (only loopback, no ``--share-net``),
        output on pipes; the caller reaps it (``ProcessReaper``) and stops it with
        ``stop_sandbox``."""
        with environment_pipe(env) as env_fd:  # secrets never on the command line
            argv = self.argv([INIT, "0", *command], binds=binds, env_fd=env_fd, as_pid_1=True)
            return _spawn(argv, identity, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, preexec=_rlimit_setter(limits),
                          pass_fds=(env_fd,))

    # -- terminals ----------------------------------------------------------------------

    def spawn_tty(
        self,
        command: Sequence[str],
        *,
        tty_fd: int,
        binds: Sequence[Bind],
        limits: Limits,
        identity: Identity,
        env: dict[str, str],
        network: bool,
    ) -> subprocess.Popen[bytes]:
        with environment_pipe(env) as env_fd:
            argv = self.argv(command, binds=binds, env_fd=env_fd, network=network,
                             new_session=False)
            return _spawn(argv, identity, stdin=tty_fd, stdout=tty_fd, stderr=tty_fd,
                          preexec=_tty_setter(limits), pass_fds=(env_fd,))


def environment_args(env: dict[str, str] | None) -> bytes:
    """bubblewrap's ``--setenv`` options for the program, NUL-separated (its ``--args``)."""
    full_env = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", **(env or {})}
    parts: list[str] = []
    for key, value in full_env.items():
        if "\0" in key or "\0" in value or "=" in key or not key:
            raise ValueError(f"environment variable {key!r} cannot be passed to a program")
        parts += ["--setenv", key, value]
    return b"".join(part.encode() + b"\0" for part in parts)


@contextlib.contextmanager
def environment_pipe(env: dict[str, str] | None) -> Iterator[int]:
    """The read end of a pipe holding ``environment_args(env)`` in full, write end closed.

    bubblewrap reads it to EOF before it starts anything, so once the program runs the pipe
    is empty (its descriptor, inherited, yields nothing). The payload must fit the pipe:
    it is grown to the payload (up to /proc/sys/fs/pipe-max-size, 1 MiB by default), more
    than the kernel would accept as an environment anyway.
    """
    payload = environment_args(env)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        if len(payload) > PIPE_DEFAULT_BYTES:
            try:
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, len(payload))
            except OSError as exc:
                raise OSError(errno.E2BIG, f"environment of {len(payload)} bytes is too large"
                              " for the sandbox") from exc
        os.set_blocking(write_end, False)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_end, view):]
        os.close(write_end)
        write_end = -1
        yield read_end
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)


def _spawn(
    argv: list[str],
    identity: Identity,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    preexec: Callable[[], None],
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    # bwrap itself starts with an empty environment: its init is PID 1 in the sandbox and
    # /proc/1/environ would otherwise show ours (database URL, JWT secret).
    kwargs: dict[str, Any] = {}
    if identity.uid is not None and identity.gid is not None:
        kwargs = {"user": identity.uid, "group": identity.gid, "extra_groups": []}
    return subprocess.Popen(
        argv,
        env={},
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        close_fds=True,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
        preexec_fn=preexec,
        cwd="/",
        **kwargs,
    )


async def _supervise(
    proc: subprocess.Popen[bytes],
    reaper: ProcessReaper,
    limits: Limits,
    stdin: bytes,
    sink: OutputSink | None,
    started: float,
    stop: asyncio.Event,
) -> RunResult:
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    capture = _Capture(limits.output_bytes, sink)
    readers = [
        asyncio.create_task(capture.pump(proc.stdout.fileno(), "stdout")),
        asyncio.create_task(capture.pump(proc.stderr.fileno(), "stderr")),
    ]
    writer = asyncio.create_task(_feed(proc.stdin, stdin))
    capped = asyncio.create_task(capture.over.wait())
    stopped = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(reaper.wait())
    timed_out = False
    try:
        await asyncio.wait({exited, capped, stopped}, timeout=limits.wall_time_s,
                           return_when=asyncio.FIRST_COMPLETED)
        if not reaper.done:
            timed_out = not capture.capped and not stop.is_set()
            # Stopped tree first, launcher last: the CPU of every process is counted.
            await stop_sandbox(proc.pid, reaper)
        # The launcher has been reaped: its PID 1 and the whole namespace are gone, so the
        # pipes reach EOF once drained (no kill by pid after the reap: it may be reused).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers), 2.0)
    finally:
        for task in [*readers, writer, capped, stopped, exited]:
            task.cancel()
        await asyncio.gather(*readers, writer, capped, stopped, exited, return_exceptions=True)
    wall_ms = (time.monotonic() - started) * 1000
    code = reaper.returncode
    exit_code, term_signal = _decode_status(code)
    usage = reaper.rusage
    cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000 if usage else 0.0
    return RunResult(
        exit_code=exit_code,
        term_signal=term_signal,
        stdout=bytes(capture.buffers["stdout"]),
        stderr=bytes(capture.buffers["stderr"]),
        timed_out=timed_out,
        output_capped=capture.capped,
        cpu_ms=cpu_ms,
        wall_ms=wall_ms,
        memory_kb=usage.ru_maxrss if usage else 0,
        cpu_exceeded=cpu_ms >= limits.cpu_time_s * 1000 or term_signal == signal.SIGXCPU,
        stopped=stop.is_set() and not timed_out,
    )


def _decode_status(code: int | None) -> tuple[int | None, int | None]:
    """bwrap reports a program killed by signal N as exit status 128+N."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    if code > 128 and code - 128 < 65:
        return code, code - 128
    return code, None


class _Capture:
    """Reads both pipes with one shared cap; past it, ``over`` is set (the run is stopped)."""

    def __init__(self, cap: int, sink: OutputSink | None) -> None:
        self.cap = cap
        self.sink = sink
        self.total = 0
        self.over = asyncio.Event()
        self.buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    @property
    def capped(self) -> bool:
        return self.over.is_set()

    async def pump(self, fd: int, stream: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for chunk in read_fd(fd):
            room = self.cap - self.total
            if room <= 0:
                self.over.set()
                return
            if len(chunk) > room:
                chunk = chunk[:room]
                self.over.set()
            self.total += len(chunk)
            self.buffers[stream] += chunk
            if self.sink is not None:
                text = decoder.decode(chunk)
                if text:
                    await self.sink(stream, text)
            if self.capped:
                return


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def read_fd(fd: int) -> AsyncIterator[bytes]:
    """Async iterator of chunks from a pipe fd (non-blocking, via the loop's reader)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    while True:
        ready = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not chunk:
            return
        yield chunk


async def _feed(pipe: Any, data: bytes) -> None:
    loop = asyncio.get_running_loop()
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        while view:
            try:
                written = os.write(fd, view)
                view = view[written:]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)
    except (BrokenPipeError, OSError):
        return
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


@dataclass(frozen=True)
class UidPool:
    """One sandbox uid per project, derived from its id: the same on every server process
    of a machine (they share the workdir), and a fork bomb in one project exhausts only
    that project's RLIMIT_NPROC. Two projects share a uid with probability 1/size."""

    size: int

    def slot(self, key: str) -> int:
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % self.size

    def acquire(self, key: str) -> int:
        return self.slot(key)

    def release(self, key: str) -> None:
        """Nothing to give back: the uid is a function of the key."""

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[int]:
        yield self.slot(key)
