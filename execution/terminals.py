"""Shared terminals: one PTY running bash in the sandbox per (project, name), any number of
clients. Members type, viewers watch; the size is the smallest client's; a reconnecting
client gets the recent scrollback (terminal queries removed); the shell is killed after an
idle timeout without clients; every command is recorded into ``terminal_sessions``.

Why over 400 lines: the PTY's input, output, backpressure, recording and shutdown all act on
one ``Terminal``'s state; the sandbox, shell parsing, masking, volumes and the socket outbox
are their own modules.

Backpressure: each client is a socket outbox (sockets.outbox), bounded by bytes. A client
that falls behind while others keep up is disconnected (1013); when every client is
behind, reading the PTY pauses, so the program writing (``yes``) blocks in the kernel
instead of filling our memory, and resumes when a client's backlog drains.

Disk: the shell's workdir is the project's size-limited volume (``execution.volumes``),
held until the shell is gone; past the quota a write fails (loop image) or the writing
processes are killed (watcher), and the terminal shows a notice when files were not saved.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import json
import logging
import os
import struct
import termios
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from collab.ports import Documents, ProjectEvents
from execution.config import ExecutionConfig
from execution.local import LocalBackend
from execution.masking import SecretMasker
from execution.process_tree import ProcessReaper, kill_group, stop_all_but_shell
from execution.quota import project_disk_quota
from execution.sandbox import WORKSPACE, Bind, Limits
from execution.shell import BASHRC, CommandRecord, ShellParser, strip_queries
from execution.volumes import WATCH, Volume
from execution.workspace import (
    Manifest,
    SyncReport,
    Workspaces,
    quota_message,
    rejected_message,
)
from persistence import executions as store
from persistence.db import Database
from persistence.environment import EnvironmentUnavailable, EnvironmentVariables
from sockets.close_codes import GOING_AWAY, SLOW_CONSUMER
from sockets.outbox import Outbox
from storage.objects import ObjectStore

log = logging.getLogger(__name__)

READ_CHUNK = 16384
RC_DIR = "/etc/icreate"
DEFAULT_ROWS, DEFAULT_COLS = 24, 80
# Output that may be the start of a secret value waits at most this long for the rest.
MASK_HOLD_S = 0.05
# Out: ["setup", {}] | ["stdout", text] | ["disconnect", code].
Message = list[Any]


class TerminalError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Client:
    user_id: uuid.UUID
    can_write: bool
    outbox: Outbox
    size: tuple[int, int] | None = None

    @property
    def behind(self) -> bool:
        return self.outbox.behind


@dataclass(eq=False)
class Terminal:
    key: tuple[uuid.UUID, str]
    master: int
    reaper: ProcessReaper
    pid: int
    owner: uuid.UUID
    manifest: Manifest
    parser: ShellParser
    clients: list[Client] = field(default_factory=list)
    scrollback: deque[str] = field(default_factory=deque)
    scrollback_len: int = 0
    size: tuple[int, int] = (DEFAULT_ROWS, DEFAULT_COLS)
    reading: bool = False
    idle_timer: asyncio.TimerHandle | None = None
    last_typist: uuid.UUID | None = None
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    closed: bool = False
    paused_count: int = 0
    uid: int | None = None
    # Input typed while editors' live text is being written to disk, in order.
    input_backlog: list[bytes] = field(default_factory=list)
    refreshing: bool = False
    # The project's size-limited workdir, held while the shell lives.
    volume: Volume | None = None
    volume_hold: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    # The project's secret values, masked out of the output (set at spawn time).
    masker: SecretMasker = field(default_factory=lambda: SecretMasker(()))
    mask_timer: asyncio.TimerHandle | None = None
    # Commands are recorded one at a time, in the order they finished (FIFO lock).
    record_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def project_id(self) -> uuid.UUID:
        return self.key[0]


class TerminalHub:
    def __init__(
        self,
        config: ExecutionConfig,
        db: Database,
        local: LocalBackend | None = None,
        variables: EnvironmentVariables | None = None,
        *,
        documents: Documents | None = None,
        projects: ProjectEvents | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.config = config
        self.db = db
        # The shell gets the project's development variables (persistence.environment).
        self.variables = variables
        self.local = local or LocalBackend(config)
        self.workspaces = Workspaces(
            config, db, documents=documents, projects=projects, objects=objects
        )
        self.terminals: dict[tuple[uuid.UUID, str], Terminal] = {}
        self._opening: dict[tuple[uuid.UUID, str], asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.commands_recorded = 0
        self.slow_clients_closed = 0
        self.rc_dir = config.workdir_root / ".terminal"

    async def start(self) -> None:
        """The sandbox is checked on first use (see ``LocalBackend``)."""

    def health(self) -> dict[str, Any]:
        problem = self.local.sandbox.problem
        return {
            "ok": problem is None,
            "state": "unavailable" if problem else "ready",
            "reason": problem,
            "terminals": len(self.terminals),
            "clients": sum(len(t.clients) for t in self.terminals.values()),
            "commands_recorded": self.commands_recorded,
            "slow_clients_closed": self.slow_clients_closed,
            "paused_reads": sum(t.paused_count for t in self.terminals.values()),
            "network": self.config.terminal_network,
            "limit_mechanism": self.local.sandbox.mechanism,
        }

    async def close(self) -> None:
        for terminal in list(self.terminals.values()):
            await self._shutdown(terminal, code=GOING_AWAY)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- attaching ----------------------------------------------------------------------

    async def attach(
        self, project_id: uuid.UUID, name: str, user_id: uuid.UUID, can_write: bool,
        outbox: Outbox,
    ) -> tuple[Terminal, Client]:
        """Join (or start) the terminal with an accepted socket's ``outbox``: it gets
        ``["setup", {}]`` and the recent scrollback (terminal queries removed) first."""
        key = (project_id, name)
        async with self._opening.setdefault(key, asyncio.Lock()):
            terminal = self.terminals.get(key)
            if terminal is None or terminal.closed:
                if not can_write:
                    raise TerminalError("not_running", "this terminal is not running")
                count = sum(1 for k in self.terminals if k[0] == project_id)
                if count >= self.config.terminal_max_per_project:
                    raise TerminalError("too_many", "too many terminals in this project")
                terminal = await self._spawn(key, user_id)
                self.terminals[key] = terminal
        client = Client(user_id, can_write, outbox)
        outbox.send_text(json.dumps(["setup", {}]))
        replay = strip_queries("".join(terminal.scrollback))
        if replay:
            outbox.send_text(json.dumps(["stdout", replay]))
        outbox.on_drain(lambda: self._resume(terminal))
        terminal.clients.append(client)
        if terminal.idle_timer is not None:
            terminal.idle_timer.cancel()
            terminal.idle_timer = None
        self._resume(terminal)
        return terminal, client

    def detach(self, terminal: Terminal, client: Client) -> None:
        client.outbox.on_drain(None)
        if client in terminal.clients:
            terminal.clients.remove(client)
        if terminal.closed:
            return
        self._apply_size(terminal)
        if not terminal.clients:
            terminal.idle_timer = asyncio.get_running_loop().call_later(
                self.config.terminal_idle_timeout_s, self._idle, terminal
            )
        else:
            self._resume(terminal)

    def _idle(self, terminal: Terminal) -> None:
        if not terminal.clients and not terminal.closed:
            log.info("terminal %s idle: shell killed", terminal.key)
            self._spawn_task(self._shutdown(terminal, code=0))

    # -- input --------------------------------------------------------------------------

    def write(self, terminal: Terminal, client: Client, text: str) -> None:
        """Type into the shell. Enter first brings editors' live text into the workdir,
        so the command sees the latest edits; input typed meanwhile waits, in order."""
        if not client.can_write or terminal.closed:
            return
        terminal.last_typist = client.user_id
        data = text.encode()
        if terminal.refreshing:
            terminal.input_backlog.append(data)
            return
        enter = data.find(b"\r")
        if enter < 0:
            self._type(terminal, data)
            return
        self._type(terminal, data[:enter])
        terminal.input_backlog.append(data[enter:])
        terminal.refreshing = True
        self._spawn_task(self._refresh_then_type(terminal))

    async def _refresh_then_type(self, terminal: Terminal) -> None:
        try:
            async with self.workspaces.lock(terminal.project_id):
                await self.workspaces.refresh(terminal.project_id, terminal.manifest, terminal.uid)
        except Exception:
            log.exception("refreshing the workdir of terminal %s failed", terminal.key)
        finally:
            terminal.refreshing = False
            backlog, terminal.input_backlog = terminal.input_backlog, []
            self._type(terminal, b"".join(backlog))

    def _type(self, terminal: Terminal, data: bytes) -> None:
        if not data or terminal.closed:
            return
        try:
            os.write(terminal.master, data)
        except BlockingIOError:
            log.info("terminal %s input dropped: the PTY is full", terminal.key)
        except OSError:
            return

    def resize(self, terminal: Terminal, client: Client, rows: int, cols: int) -> None:
        client.size = (max(2, min(rows, 1000)), max(2, min(cols, 1000)))
        self._apply_size(terminal)

    def _apply_size(self, terminal: Terminal) -> None:
        sizes = [c.size for c in terminal.clients if c.size is not None]
        if not sizes or terminal.closed:
            return
        size = (min(s[0] for s in sizes), min(s[1] for s in sizes))
        if size != terminal.size:
            terminal.size = size
            _set_winsize(terminal.master, *size)

    # -- the shell ----------------------------------------------------------------------

    async def _spawn(self, key: tuple[uuid.UUID, str], user_id: uuid.UUID) -> Terminal:
        project_id = key[0]
        await self.local.ready()
        if self.local.sandbox.problem is not None:
            raise TerminalError("sandbox_unavailable", self.local.sandbox.problem)
        await asyncio.to_thread(self._write_rc)
        try:
            environment = await self.variables.load(project_id) if self.variables else None
        except EnvironmentUnavailable as exc:
            raise TerminalError("environment_unavailable", str(exc)) from None
        variables = environment.variables if environment else {}
        owner_key = str(project_id)
        slot = self.local.uids.acquire(owner_key)
        volume_hold = contextlib.AsyncExitStack()
        try:
            identity = self.local.sandbox.identity_for(slot)
            quota = await project_disk_quota(self.db, self.config, project_id)
            volume = await volume_hold.enter_async_context(
                self.local.volumes.use(project_id, quota, identity.uid)
            )
            async with self.workspaces.lock(project_id):
                manifest = await self.workspaces.materialize(project_id, identity.uid)
            master, slave = os.openpty()
            _set_winsize(master, DEFAULT_ROWS, DEFAULT_COLS)
            try:
                proc = self.local.sandbox.spawn_tty(
                    ["/bin/bash", "--rcfile", f"{RC_DIR}/bashrc", "-i"],
                    tty_fd=slave,
                    binds=[
                        Bind(self.workspaces.path(project_id), WORKSPACE, writable=True),
                        Bind(self.rc_dir, RC_DIR),
                    ],
                    limits=self._limits(),
                    identity=identity,
                    env={**variables, "TERM": "xterm-256color", "SHELL": "/bin/bash",
                         "USER": "user"},
                    network=self.config.terminal_network,
                )
            finally:
                os.close(slave)
        except BaseException:
            self.local.uids.release(owner_key)
            await volume_hold.aclose()
            raise
        os.set_blocking(master, False)
        terminal = Terminal(
            key=key, master=master, reaper=ProcessReaper(proc.pid), pid=proc.pid,
            owner=user_id, manifest=manifest,
            parser=ShellParser(output_cap=self.config.terminal_command_output_bytes),
            uid=identity.uid, volume=volume, volume_hold=volume_hold,
            masker=SecretMasker(environment.secret_values if environment else ()),
        )
        proc.returncode = 0  # reaped by the ProcessReaper, not by Popen
        self._spawn_task(self._watch(terminal, owner_key))
        self._spawn_task(self._stop_writers_past_quota(terminal))
        self._resume(terminal)
        return terminal

    def _limits(self) -> Limits:
        base = Limits.default(self.config)
        return Limits(
            cpu_time_s=0, wall_time_s=0, memory_kb=max(base.memory_kb, 512 * 1024),
            processes=max(base.processes, 128), file_size_kb=base.file_size_kb,
            output_bytes=0,
        )

    def _write_rc(self) -> None:
        self.rc_dir.mkdir(parents=True, exist_ok=True)
        self.rc_dir.chmod(0o755)
        rc = self.rc_dir / "bashrc"
        if not rc.exists() or rc.read_text() != BASHRC:
            rc.write_text(BASHRC)
            rc.chmod(0o644)

    async def _watch(self, terminal: Terminal, owner_key: str) -> None:
        try:
            await terminal.reaper.wait()
        finally:
            self.local.uids.release(owner_key)
        if not terminal.closed:
            await self._shutdown(terminal, code=0)

    async def _shutdown(self, terminal: Terminal, code: int) -> None:
        if terminal.closed:
            return
        terminal.closed = True
        self._pause(terminal)
        if not terminal.reaper.done:
            kill_group(terminal.pid)
        if terminal.idle_timer is not None:
            terminal.idle_timer.cancel()
        if terminal.mask_timer is not None:
            terminal.mask_timer.cancel()
        for client in list(terminal.clients):
            client.outbox.send_text(json.dumps(["disconnect", code]))
            client.outbox.close(GOING_AWAY, "terminal closed")
        terminal.clients.clear()
        if self.terminals.get(terminal.key) is terminal:
            del self.terminals[terminal.key]
        await terminal.reaper.wait(5)
        with contextlib.suppress(OSError):
            os.close(terminal.master)
        await self._sync(terminal)
        await terminal.volume_hold.aclose()

    async def _stop_writers_past_quota(self, terminal: Terminal) -> None:
        """Where a watcher keeps the disk quota: when the workdir grows past it, the
        foreground command gets a Ctrl-C and every other process of the terminal but the
        shell is killed (the shell stays, to delete files with)."""
        volume = terminal.volume
        if volume is None or volume.mode != WATCH:
            return
        while not terminal.closed:
            await volume.over_quota.wait()
            volume.over_quota.clear()
            if terminal.closed:
                return
            # Ctrl-C first (a loop run by the shell itself stops on it), then the rest.
            self._type(terminal, b"\x03")
            await asyncio.sleep(0.1)
            await asyncio.to_thread(stop_all_but_shell, terminal.pid)
            self._notice(terminal, quota_message(volume.quota_bytes, SyncReport())
                         + ": the command writing was stopped")

    # -- output -------------------------------------------------------------------------

    def _resume(self, terminal: Terminal) -> None:
        if terminal.reading or terminal.closed:
            return
        if terminal.clients and all(c.behind for c in terminal.clients):
            return
        asyncio.get_running_loop().add_reader(terminal.master, self._readable, terminal)
        terminal.reading = True

    def _pause(self, terminal: Terminal) -> None:
        if terminal.reading:
            asyncio.get_running_loop().remove_reader(terminal.master)
            terminal.reading = False

    def _readable(self, terminal: Terminal) -> None:
        try:
            data = os.read(terminal.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything on the PTY is gone
            data = b""
        if not data:
            self._pause(terminal)
            return
        text = terminal.masker.feed(terminal.decoder.decode(data))
        if terminal.mask_timer is not None:
            terminal.mask_timer.cancel()
            terminal.mask_timer = None
        if terminal.masker.pending:
            # The end may begin a secret value: wait briefly for the rest, then show it.
            terminal.mask_timer = asyncio.get_running_loop().call_later(
                MASK_HOLD_S, self._release_held, terminal
            )
        self._output(terminal, text)
        if terminal.clients and all(c.behind for c in terminal.clients):
            terminal.paused_count += 1
            self._pause(terminal)

    def _release_held(self, terminal: Terminal) -> None:
        terminal.mask_timer = None
        if not terminal.closed:
            self._output(terminal, terminal.masker.flush())

    def _output(self, terminal: Terminal, text: str) -> None:
        """Masked output: to the command parser, the scrollback and every client."""
        if not text:
            return
        shown, finished = terminal.parser.feed(text, time.monotonic())
        if shown:
            self._remember(terminal, shown)
            self._broadcast(terminal, ["stdout", shown])
        for record in finished:
            self._spawn_task(self._record(terminal, record))

    def _remember(self, terminal: Terminal, text: str) -> None:
        terminal.scrollback.append(text)
        terminal.scrollback_len += len(text)
        cap = self.config.terminal_scrollback_bytes
        while terminal.scrollback_len > cap and len(terminal.scrollback) > 1:
            terminal.scrollback_len -= len(terminal.scrollback.popleft())

    def _broadcast(self, terminal: Terminal, message: Message) -> None:
        text = json.dumps(message)  # encoded once for every client
        keeping_up = [c for c in terminal.clients if not c.behind]
        for client in list(terminal.clients):
            if client.behind:
                if keeping_up:
                    # Others keep up: this one is hopeless; it reconnects and gets scrollback.
                    self.slow_clients_closed += 1
                    terminal.clients.remove(client)
                    # It reconnects and gets the scrollback.
                    client.outbox.close(SLOW_CONSUMER, "too slow to keep up")
                continue
            client.outbox.send_text(text)

    async def _record(self, terminal: Terminal, record: CommandRecord) -> None:
        user = terminal.last_typist or terminal.owner
        try:
            async with terminal.record_lock, self.db.service() as conn:
                await store.record_terminal_command(
                    conn, user_id=user, project_id=terminal.project_id,
                    command=record.command, output=record.output, exit_code=record.exit_code,
                    duration_ms=record.duration_ms, working_directory=record.cwd,
                )
            self.commands_recorded += 1
        except Exception:
            log.exception("recording a command of terminal %s failed", terminal.key)
        await self._sync(terminal)

    async def _sync(self, terminal: Terminal) -> None:
        """Bring files the command created or changed back into the project."""
        project_id = terminal.project_id
        user = terminal.last_typist or terminal.owner
        volume = terminal.volume
        if volume is None:
            return
        try:
            async with self.workspaces.lock(project_id):
                report = await self.workspaces.sync_back(
                    project_id, terminal.manifest, user, volume.quota_bytes
                )
                full = await self.workspaces.settle_quota(volume, report)
        except Exception:
            log.exception("workspace sync of terminal %s failed", terminal.key)
            return
        if full or report.over_quota:
            self._notice(terminal, quota_message(volume.quota_bytes, report))
        rejected = rejected_message(report)
        if rejected is not None:
            self._notice(terminal, rejected)

    def _notice(self, terminal: Terminal, text: str) -> None:
        """A line from the server in the terminal (yellow), for everyone attached."""
        if terminal.closed:
            return
        line = f"\r\n\x1b[33m[icreate] {text}\x1b[0m\r\n"
        self._remember(terminal, line)
        self._broadcast(terminal, ["stdout", line])

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

