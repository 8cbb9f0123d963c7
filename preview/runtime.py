"""The running previews of this process: at most one per project and environment.

A deployment's files live in ``<previews>/<label>/<deployment>/``, its relay's socket in
``<sockets>/<label>-<deployment>/s`` (a short root: ``sun_path`` holds 107 bytes);
``<sockets>/<label>`` is a symlink to the one being served, switched atomically once the new
app answers, then the old app is stopped: a redeploy has no gap. The proxy only follows
``<sockets>/<label>/s``.

Development previews are live: every ``watch_interval_s`` the open documents' text is
compared with what was written (``Workspaces.refresh``), and every ``rescan_interval_s``
the whole project is copied again (new files); on a change the build runs again and a
server app is restarted (a static one is served from the files at once), then
``preview.updated`` goes to the project channel so the IDE reloads its pane.
A preview that has had no request for ``idle_stop_s`` is stopped (``preview.stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from collab.ports import Documents
from execution.config import ExecutionConfig
from execution.sandbox import WORKSPACE, Bind, Identity, Limits, Sandbox, UidPool
from execution.workspace import Manifest
from persistence.db import Database
from preview.config import PreviewConfig
from preview.files import DeploymentFiles
from preview.logs import LogBuffer
from preview.process import AppFailed, AppProcess, Layout, limits_for
from preview.spec import AppSpec
from storage.objects import ObjectStore

log = logging.getLogger(__name__)

Publish = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]
ENV_CODES = {"development": "d", "staging": "s", "production": "p"}
CODE_ENVS = {code: env for env, code in ENV_CODES.items()}
DRAIN_S = 0.5  # what a replaced app process gets for the requests it is answering


class PreviewKey(NamedTuple):
    project_id: uuid.UUID
    environment: str


def label_of(key: PreviewKey) -> str:
    return f"{key.project_id.hex}-{ENV_CODES[key.environment]}"


def key_of(label: str) -> PreviewKey | None:
    hex_id, _, code = label.partition("-")
    if code not in CODE_ENVS or len(hex_id) != 32:
        return None
    try:
        return PreviewKey(uuid.UUID(hex=hex_id), CODE_ENVS[code])
    except ValueError:
        return None


class BuildFailed(RuntimeError):
    pass


@dataclass(eq=False)
class Running:
    key: PreviewKey
    deployment_id: uuid.UUID
    layout: Layout
    spec: AppSpec
    process: AppProcess
    identity: Identity
    env: dict[str, str]
    logs: LogBuffer
    files: DeploymentFiles | None = None
    manifest: Manifest | None = None
    version: int = 1
    last_request: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task[None] | None = None


class PreviewRuntime:
    def __init__(self, config: PreviewConfig, execution: ExecutionConfig, sandbox: Sandbox,
                 uids: UidPool, db: Database, publish: Publish, *,
                 documents: Documents | None = None,
                 objects: ObjectStore | None = None) -> None:
        self.config = config
        self.execution = execution
        self.sandbox = sandbox
        self.uids = uids
        self.db = db
        self.documents = documents  # live text of open documents (and the stored one)
        self.objects = objects
        self.publish = publish
        self.root = execution.workdir_root / ".previews"
        self.sockets = socket_root(execution.workdir_root)
        self.origin = config.origin or f"http://localhost:{config.port}"
        self._running: dict[PreviewKey, Running] = {}
        self._locks: dict[PreviewKey, asyncio.Lock] = {}
        self._idle: asyncio.Task[None] | None = None

    # -- places --------------------------------------------------------------------------

    def url(self, key: PreviewKey) -> str:
        scheme, _, host = self.origin.partition("://")
        return f"{scheme}://{label_of(key)}.{host}/"

    def layout(self, key: PreviewKey, deployment_id: uuid.UUID) -> Layout:
        label, deployment = label_of(key), deployment_id.hex[:12]
        return Layout(self.root / label / deployment, self.sockets / f"{label}-{deployment}")

    def socket(self, key: PreviewKey) -> Path:
        return self.sockets / label_of(key) / "s"

    def identity(self, key: PreviewKey) -> Identity:
        return self.sandbox.identity_for(self.uids.slot(str(key.project_id)))

    def running(self, key: PreviewKey) -> Running | None:
        return self._running.get(key)

    def lock(self, key: PreviewKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._make_root)
        self._idle = asyncio.create_task(self._idle_loop(), name="preview-idle")

    def _make_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for path in (self.execution.workdir_root, self.root):
            path.chmod(0o711)
        try:
            self.sockets.mkdir(mode=0o711)
        except FileExistsError:
            # In a shared /tmp: only a directory of ours, not writable by others, will do.
            info = self.sockets.lstat()
            if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
                    or info.st_mode & 0o022):
                raise RuntimeError(f"{self.sockets} exists and is not a private directory "
                                   "of this user") from None

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            await asyncio.gather(self._idle, return_exceptions=True)
        for key in list(self._running):
            await self.stop(key, reason="shutdown", announce=False)

    def health(self) -> dict[str, Any]:
        return {"origin": self.origin, "running": len(self._running),
                "sandbox": self.sandbox.problem or "ok"}

    def touch(self, key: PreviewKey) -> None:
        running = self._running.get(key)
        if running is not None:
            running.last_request = time.monotonic()

    # -- building ------------------------------------------------------------------------

    async def copy(self, key: PreviewKey, deployment_id: uuid.UUID
                   ) -> tuple[Layout, DeploymentFiles, Manifest]:
        layout = self.layout(key, deployment_id)
        uid = self.identity(key).uid
        await asyncio.to_thread(_fresh_dir, layout.root)
        files = DeploymentFiles(self.execution, self.db, layout.app, documents=self.documents,
                                objects=self.objects)
        manifest = await files.materialize(key.project_id, uid)
        return layout, files, manifest

    async def build(self, key: PreviewKey, layout: Layout, spec: AppSpec,
                    env: dict[str, str], logs: LogBuffer) -> None:
        """Run the build command in the sandbox (no network), output into ``logs``."""
        if spec.build is None:
            return
        await logs.line(f"$ {spec.build}")
        base = Limits.for_compile(self.execution)
        limits = Limits(cpu_time_s=base.cpu_time_s, wall_time_s=self.config.build_timeout_s,
                        memory_kb=max(base.memory_kb, self.config.memory_kb),
                        processes=base.processes, file_size_kb=base.file_size_kb,
                        output_bytes=8 * 1024 * 1024)

        async def sink(_stream: str, text: str) -> None:
            await logs.write(text)

        result = await self.sandbox.run(
            ["/bin/sh", "-c", spec.build], binds=[Bind(layout.app, WORKSPACE, writable=True)],
            limits=limits, identity=self.identity(key), sink=sink, env=env,
        )
        await logs.flush()
        if result.timed_out:
            raise BuildFailed(f"the build ran past {self.config.build_timeout_s:g} s")
        if result.exit_code != 0:
            raise BuildFailed(f"the build failed (exit status {result.exit_code})")

    def app_limits(self) -> Limits:
        return limits_for(self.config.memory_kb, self.config.cpu_time_s,
                          self.config.max_processes)

    async def activate(self, key: PreviewKey, deployment_id: uuid.UUID, layout: Layout,
                       spec: AppSpec, env: dict[str, str], logs: LogBuffer, *,
                       files: DeploymentFiles | None = None,
                       manifest: Manifest | None = None) -> Running:
        """Start the app, switch ``current`` to it once it answers, stop the previous one."""
        identity = self.identity(key)
        process = AppProcess(self.sandbox, layout, spec, identity, self.app_limits(), env, logs)
        async with self.lock(key):
            await process.start(self.config.start_timeout_s)
            await asyncio.to_thread(_point_current, layout.run, self.socket(key).parent)
            previous = self._running.pop(key, None)
            running = Running(key, deployment_id, layout, spec, process, identity, env, logs,
                              files, manifest)
            self._running[key] = running
        if previous is not None:
            await self._retire(previous)
        if key.environment == "development" and files is not None and manifest is not None:
            running.watcher = asyncio.create_task(self._watch(running),
                                                  name=f"preview-watch-{label_of(key)}")
        await asyncio.to_thread(_prune, layout.root.parent, self.sockets,
                                self.config.kept_deployments)
        return running

    async def stop(self, key: PreviewKey, *, reason: str, announce: bool = True) -> bool:
        async with self.lock(key):
            running = self._running.get(key)
            if running is None:
                return False
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(self.socket(key).parent.unlink)
            await self._retire(running)
            del self._running[key]  # only once stopped: ``running(key)`` is the truth
        if announce:
            await self._announce(key, "preview.stopped", reason=reason,
                                 deployment_id=str(running.deployment_id))
        return True

    async def _retire(self, running: Running) -> None:
        if running.watcher is not None and running.watcher is not asyncio.current_task():
            running.watcher.cancel()
            await asyncio.gather(running.watcher, return_exceptions=True)
        await running.process.stop()
        if running.layout.run.name != _served(self.socket(running.key).parent):
            await asyncio.to_thread(shutil.rmtree, running.layout.run, True)

    async def _announce(self, key: PreviewKey, kind: str, **body: Any) -> None:
        try:
            await self.publish(key.project_id, {"type": kind, "environment": key.environment,
                                                "url": self.url(key), **body})
        except Exception:
            log.exception("could not publish %s", kind)

    # -- live reload ---------------------------------------------------------------------

    async def _watch(self, running: Running) -> None:
        assert running.files is not None and running.manifest is not None
        next_rescan = time.monotonic() + self.config.rescan_interval_s
        while True:
            await asyncio.sleep(self.config.watch_interval_s)
            try:
                changed = await running.files.refresh(running.key.project_id, running.manifest,
                                                      running.identity.uid)
                if time.monotonic() >= next_rescan:
                    next_rescan = time.monotonic() + self.config.rescan_interval_s
                    fresh = await running.files.materialize(running.key.project_id,
                                                            running.identity.uid)
                    if fresh.entries != running.manifest.entries:
                        changed = changed or sorted(fresh.entries)
                    running.manifest = fresh
                if changed:
                    await self._reload(running, changed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("preview reload of %s failed", label_of(running.key))

    async def _reload(self, running: Running, changed: list[str]) -> None:
        """Build again; a server app is restarted blue/green: the new process (its own
        namespace, its own socket) starts beside the old one, the link is switched once it
        answers, then the old one gets ``DRAIN_S`` for requests in flight and is stopped."""
        started = time.monotonic()
        old: tuple[AppProcess, Layout] | None = None
        try:
            await self.build(running.key, running.layout, running.spec, running.env,
                             running.logs)
            if running.spec.kind != "static":
                layout = Layout(running.layout.root, self.sockets / (
                    f"{label_of(running.key)}-{running.deployment_id.hex[:12]}"
                    f".{running.version + 1}"))
                process = AppProcess(self.sandbox, layout, running.spec, running.identity,
                                     self.app_limits(), running.env, running.logs)
                await process.start(self.config.start_timeout_s)
                async with self.lock(running.key):
                    await asyncio.to_thread(_point_current, layout.run,
                                            self.socket(running.key).parent)
                    old = (running.process, running.layout)
                    running.process, running.layout = process, layout
        except (BuildFailed, AppFailed) as exc:
            await running.logs.line(f"reload failed: {exc}")
            await self._announce(running.key, "preview.failed", error=str(exc),
                                 deployment_id=str(running.deployment_id))
            return
        running.version += 1
        await self._announce(running.key, "preview.updated", version=running.version,
                             files=changed[:20], deployment_id=str(running.deployment_id),
                             reload_ms=round((time.monotonic() - started) * 1000, 1))
        if old is not None:
            await asyncio.sleep(DRAIN_S)
            await old[0].stop()
            await asyncio.to_thread(shutil.rmtree, old[1].run, True)

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, max(0.2, self.config.idle_stop_s / 4)))
            now = time.monotonic()
            for key, running in list(self._running.items()):
                if now - running.last_request > self.config.idle_stop_s:
                    await self.stop(key, reason="idle")
                elif not running.process.alive and running.watcher is None:
                    await self.stop(key, reason="exited")


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)


def socket_root(workdir_root: Path) -> Path:
    """A short directory for the relays' sockets, one per data dir."""
    digest = hashlib.sha256(str(workdir_root.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"icreate-previews-{digest}"


def _served(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def _point_current(run_dir: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    tmp.replace(link)


def _prune(label_dir: Path, sockets: Path, keep: int) -> None:
    """Keep the newest ``keep`` deployment directories (and the one being served)."""
    link = sockets / label_dir.name
    # <project hex>-<env>-<deployment>[.<restart>]: the deployment being served.
    current = os.readlink(link).split("-")[2].split(".")[0] if link.is_symlink() else None
    dirs = sorted((p for p in label_dir.iterdir() if p.is_dir() and not p.is_symlink()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in dirs[keep:]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(sockets / f"{label_dir.name}-{old.name}", ignore_errors=True)
