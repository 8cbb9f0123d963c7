"""A size-limited workdir per project, so a run or a terminal cannot fill the host's disk.

Where the host allows it (root, util-linux ``mount`` and e2fsprogs, loop devices), a
project's workdir is an ext4 filesystem in a sparse image file of the project's quota,
loop-mounted over ``workdir_root/<project_id>``: a writer past the quota gets ENOSPC from
the kernel, the host folder cannot grow past it, and nothing has to watch. Images live in
``workdir_root/.volumes`` (``<project_id>.img``, sparse: they hold what was written).

Elsewhere (not root, no loop devices: ``health()`` says why) a watcher measures the workdir
every ``WATCH_INTERVAL_S`` while it is in use and sets ``Volume.over_quota`` when it is past
the quota and still growing; the run or terminal holding it then stops its writer. The
folder can overshoot by what is written between two measurements (each file is also capped
by RLIMIT_FSIZE). Either way nothing past the quota is copied back into the project
(``Workspaces.sync_back``).

Server processes of one machine share the workdirs, so mounts are machine state guarded by
``flock`` on ``<project_id>.lock``: users hold it shared for as long as they use the
workdir; mounting, resizing and unmounting hold it exclusively, and the idle unmount only
tries (never waits), so it cannot pull a mount from under a run. A changed quota takes
effect at the next mount (the image is made again: a workdir is a copy of the project).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execution import disk
from execution.config import ExecutionConfig

log = logging.getLogger(__name__)

LOOP, WATCH = "loop", "watch"
WATCH_INTERVAL_S = 0.2
MIN_IMAGE_BYTES = 2 * 1024 * 1024  # the smallest ext4 worth making
# Free space under which a loop volume counts as full: ext4 keeps some blocks back for its
# own metadata (about 2 % of a small filesystem), so a writer gets ENOSPC before zero.
FULL_SLACK_BYTES = 256 * 1024
FULL_SLACK_SHARE = 0.02
TOOLS = ("mount", "umount", "mkfs.ext4")
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


class VolumeError(RuntimeError):
    """A loop volume could not be made or mounted."""


class VolumeBusy(VolumeError):
    """A process of this machine still uses the workdir: try again later."""


@dataclass(eq=False)
class Volume:
    """A project's workdir while someone uses it."""

    path: Path
    quota_bytes: int
    mode: str
    over_quota: asyncio.Event = field(default_factory=asyncio.Event)

    def used_bytes(self) -> int:
        """Blocking: call it in a thread."""
        if self.mode == LOOP:
            fs = os.statvfs(self.path)
            return (fs.f_blocks - fs.f_bfree) * fs.f_frsize
        return disk.usage(self.path)

    def full(self) -> bool:
        """Blocking. The quota was reached: by the filesystem, or seen by the watcher."""
        if self.over_quota.is_set():
            return True
        if self.mode == LOOP:
            fs = os.statvfs(self.path)
            slack = max(FULL_SLACK_BYTES, FULL_SLACK_SHARE * fs.f_blocks * fs.f_frsize)
            return fs.f_bavail * fs.f_frsize < slack
        return disk.usage(self.path) > self.quota_bytes


class ProjectVolumes:
    def __init__(self, config: ExecutionConfig) -> None:
        self.config = config
        self.images = config.workdir_root / ".volumes"
        self.mode: str | None = None
        self.note = "not checked yet"
        self._detecting = asyncio.Lock()
        self._project_locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._users: Counter[uuid.UUID] = Counter()
        self._mounted: set[uuid.UUID] = set()
        self._idle: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[bool]] = set()

    def health(self) -> dict[str, Any]:
        return {
            "disk_quota_bytes": self.config.project_disk_quota_bytes,
            "disk_enforcement": self.mode or "unchecked",
            "disk_note": self.note,
            "disk_volumes_mounted": len(self._mounted),
        }

    # -- choosing the mechanism ---------------------------------------------------------

    async def _detect(self) -> str:
        async with self._detecting:
            if self.mode is None:
                self.mode, self.note = await self._probe()
                log.info("project disk quota: %s (%s)", self.mode, self.note)
            return self.mode

    async def _probe(self) -> tuple[str, str]:
        if self.config.disk_enforcement == WATCH:
            return WATCH, "a watcher stops writers past the quota (PROJECT_DISK_ENFORCEMENT)"
        if os.geteuid() != 0:
            return WATCH, "not root: no loop-mounted images; a watcher stops writers instead"
        missing = [tool for tool in TOOLS if shutil.which(tool, path=TOOL_ENV["PATH"]) is None]
        if missing:
            return WATCH, f"{', '.join(missing)} not installed; a watcher stops writers"
        probe = self.images / ".probe"
        try:
            await asyncio.to_thread(self._prepare_images)
            await self._make_image(self.images / ".probe.img", MIN_IMAGE_BYTES, None)
            await asyncio.to_thread(probe.mkdir, exist_ok=True)
            await _tool("mount", *self._mount_options(), str(self.images / ".probe.img"),
                        str(probe))
            await _tool("umount", str(probe))
        except (OSError, VolumeError) as exc:
            return WATCH, f"loop mounts unavailable ({exc}); a watcher stops writers"
        finally:
            with contextlib.suppress(OSError):
                (self.images / ".probe.img").unlink()
        return LOOP, "a loop-mounted ext4 image per project, sized to its quota"

    def _prepare_images(self) -> None:
        self.images.mkdir(parents=True, exist_ok=True)
        self.images.chmod(0o700)

    @staticmethod
    def _mount_options() -> list[str]:
        return ["-o", "loop,nosuid,nodev,noatime"]

    # -- using a project's workdir ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(
        self, project_id: uuid.UUID, quota_bytes: int, uid: int | None
    ) -> AsyncIterator[Volume]:
        """The project's workdir, limited to ``quota_bytes``, for the duration."""
        mode = await self._detect()
        path = self.config.workdir_root / str(project_id)
        volume = Volume(path, quota_bytes, mode)
        timer = self._idle.pop(project_id, None)
        if timer is not None:
            timer.cancel()
        self._users[project_id] += 1
        lock_fd = -1
        watcher: asyncio.Task[None] | None = None
        try:
            if mode == LOOP:
                try:
                    lock_fd = await self._hold_mounted(project_id, path, quota_bytes, uid)
                except (VolumeError, OSError) as exc:
                    # Out of loop devices, a broken image...: this use is watched instead.
                    log.error("workdir of %s not mounted (%s): watching it instead",
                              project_id, exc)
                    volume.mode = WATCH
            if volume.mode == WATCH:
                watcher = asyncio.create_task(_watch(volume), name=f"disk-watch-{project_id}")
            yield volume
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            if lock_fd >= 0:
                os.close(lock_fd)  # drops our shared hold
            self._users[project_id] -= 1
            if self._users[project_id] <= 0:
                del self._users[project_id]
                if project_id in self._mounted:
                    self._idle[project_id] = asyncio.get_running_loop().call_later(
                        self.config.disk_volume_idle_s, self._unmount_later, project_id
                    )

    async def _hold_mounted(
        self, project_id: uuid.UUID, path: Path, quota_bytes: int, uid: int | None
    ) -> int:
        """Mount the project's image if it is not, and return a lock fd held shared."""
        lock_path = self.images / f"{project_id}.lock"
        fd = await asyncio.to_thread(os.open, lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                     0o600)
        try:
            async with self._project_locks.setdefault(project_id, asyncio.Lock()):
                while True:
                    if await asyncio.to_thread(_try_flock, fd, fcntl.LOCK_EX):
                        await self._mount(project_id, path, quota_bytes, uid)
                        fcntl.flock(fd, fcntl.LOCK_SH)  # cannot block: we held it alone
                    else:
                        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_SH)
                    if await asyncio.to_thread(os.path.ismount, path):
                        self._mounted.add(project_id)
                        return fd
                    # Unmounted between our two locks: go round again.
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    await asyncio.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise

    async def _mount(
        self, project_id: uuid.UUID, path: Path, quota_bytes: int, uid: int | None
    ) -> None:
        """Under the exclusive lock: (re)make the image at the quota's size and mount it."""
        image = self.images / f"{project_id}.img"
        size = max(quota_bytes, MIN_IMAGE_BYTES)
        if await asyncio.to_thread(os.path.ismount, path):
            if await asyncio.to_thread(_size_of, image) == size:
                return
            await _tool("umount", str(path))  # nobody holds it: we have it exclusively
        if await asyncio.to_thread(_size_of, image) != size:
            await self._make_image(image, size, uid)
        # Whatever lies in the folder under the mount point (a workdir from before quotas)
        # would stay on the host's disk unseen: it is a copy of the project, drop it.
        await asyncio.to_thread(_empty_dir, path)
        await _tool("mount", *self._mount_options(), str(image), str(path))
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.rmdir, path / "lost+found")

    async def _make_image(self, image: Path, size: int, uid: int | None) -> None:
        await asyncio.to_thread(_sparse_file, image, size)
        owner = f"{uid}:{uid}" if uid is not None else "0:0"
        await _tool("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                    "-E", f"root_owner={owner}", "-L", "icreate", str(image))

    # -- releasing ----------------------------------------------------------------------

    def _unmount_later(self, project_id: uuid.UUID) -> None:
        self._idle.pop(project_id, None)
        task = asyncio.create_task(self._unmount_if_idle(project_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _unmount_if_idle(self, project_id: uuid.UUID) -> bool:
        """Unmount unless anyone (any process) uses it; never waits for them."""
        if self._users[project_id] > 0:
            return False
        path = self.config.workdir_root / str(project_id)
        lock_path = self.images / f"{project_id}.lock"
        try:
            fd = await asyncio.to_thread(os.open, lock_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self._mounted.discard(project_id)
            return False
        try:
            if not await asyncio.to_thread(_try_flock, fd, fcntl.LOCK_EX):
                return False  # another process uses it: it will unmount it later
            if await asyncio.to_thread(os.path.ismount, path):
                await _tool("umount", str(path))
            self._mounted.discard(project_id)
            return True
        except VolumeError as exc:
            log.warning("unmounting the workdir of %s failed: %s", project_id, exc)
            return False
        finally:
            os.close(fd)

    async def remove(self, project_id: uuid.UUID) -> bool:
        """A deleted project's workdir, disk image and lock file gone from this machine;
        whether there was anything to remove. Idempotent. ``VolumeBusy`` while any process
        of the machine uses the workdir (the shared flock): nothing is pulled from under a
        run or a terminal."""
        timer = self._idle.pop(project_id, None)
        if timer is not None:
            timer.cancel()
        if self._users[project_id] > 0:
            raise VolumeBusy(f"the workdir of {project_id} is in use here")
        path = self.config.workdir_root / str(project_id)
        image = self.images / f"{project_id}.img"
        lock_path = self.images / f"{project_id}.lock"
        fd = -1
        try:
            with contextlib.suppress(FileNotFoundError):
                fd = await asyncio.to_thread(os.open, lock_path, os.O_RDWR | os.O_CLOEXEC)
            if fd >= 0 and not await asyncio.to_thread(_try_flock, fd, fcntl.LOCK_EX):
                raise VolumeBusy(f"the workdir of {project_id} is in use on this machine")
            found = any(await asyncio.to_thread(
                lambda: [p.exists() or p.is_symlink() for p in (path, image, lock_path)]))
            if await asyncio.to_thread(os.path.ismount, path):
                await _tool("umount", str(path))
            self._mounted.discard(project_id)
            await asyncio.to_thread(remove_tree, path)
            for leftover in (image, lock_path):  # the lock last: it guards the rest
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(leftover.unlink)
            return found
        finally:
            if fd >= 0:
                os.close(fd)

    async def close(self) -> None:
        """Unmount what this process mounted and nobody uses any more."""
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for project_id in list(self._mounted):
            await self._unmount_if_idle(project_id)


async def _watch(volume: Volume) -> None:
    """Set ``over_quota`` when the workdir is past the quota and still growing (a user
    who is over it may still delete files)."""
    previous = await asyncio.to_thread(disk.usage, volume.path)
    while True:
        await asyncio.sleep(WATCH_INTERVAL_S)
        used = await asyncio.to_thread(disk.usage, volume.path)
        if used > volume.quota_bytes and used > previous:
            log.info("%s is over its quota (%d > %d bytes)", volume.path, used,
                     volume.quota_bytes)
            volume.over_quota.set()
        previous = used


async def _tool(*argv: str) -> None:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=TOOL_ENV, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        text = output.decode(errors="replace").strip()[:300]
        raise VolumeError(f"{argv[0]} exited {proc.returncode}: {text}")
    log.debug("%s took %.0f ms", argv[0], (time.monotonic() - started) * 1000)


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _sparse_file(path: Path, size: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _empty_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def remove_tree(path: Path) -> None:
    """Remove a workdir (never following its symlinks); nothing there is fine."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
