"""Host-side file operations on a workdir the sandbox controls. Blocking: run in a thread.

The sandbox may plant symlinks (``x -> /etc/shadow``, ``src -> /etc``) or FIFOs, and a
terminal keeps running while we read or write, so every path is walked component by
component from a directory fd with ``O_NOFOLLOW``: a symlink is never followed, only
regular files are read, and files over the size limit are skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
# Scratch directories of runs inside a workdir (compiler output, removed after each run).
BUILDS = ".icreate-build"
# Build and tool caches are not project files.
IGNORED_DIRS = frozenset({"__pycache__", ".git", "node_modules", ".cache", ".mypy_cache", BUILDS})
# A file being replaced is written under a temporary name first (``write_file``).
TEMP_SUFFIX = ".icreate-tmp"
IGNORED_SUFFIXES = (".pyc", ".o", ".class", TEMP_SUFFIX)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_parts(path: str) -> list[str] | None:
    """Segments of a project path, or None if it could escape the workdir."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts or any(p in {".", ".."} or "\x00" in p for p in parts):
        return None
    return parts


def _open_dir(parent_fd: int, name: str, *, create: bool, mode: int = 0o775) -> int:
    """Open ``name`` under ``parent_fd`` as a directory without following a symlink; with
    ``create``, whatever non-directory is in the way (a planted symlink) is replaced."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except (NotADirectoryError, OSError) as exc:
        if not create or isinstance(exc, PermissionError):
            raise
        os.unlink(name, dir_fd=parent_fd)  # unlinkat never follows the link
    os.mkdir(name, mode, dir_fd=parent_fd)
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


@contextlib.contextmanager
def _dir_chain(root_fd: int, parts: list[str], *, create: bool) -> Iterator[int]:
    fds: list[int] = []
    current = root_fd
    try:
        for part in parts:
            current = _open_dir(current, part, create=create)
            fds.append(current)
        yield current
    finally:
        for fd in fds:
            os.close(fd)


def ensure_root(path: Path, uid: int | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o775)
    if uid is not None:
        os.lchown(path, uid, uid)


def write_file(root: Path, rel: str, data: bytes, uid: int | None) -> bool:
    """Write ``data`` at ``rel`` under ``root`` (no symlink followed); False if unsafe."""
    parts = safe_parts(rel)
    if parts is None:
        return False
    root_fd = os.open(root, DIR_FLAGS)
    try:
        with _dir_chain(root_fd, parts[:-1], create=True) as dir_fd:
            name = parts[-1]
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    if stat.S_ISDIR(st.st_mode):
                        return False
                    os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            # Written beside and renamed over: a reader (a preview's static server, a
            # running program) sees the old bytes or the new, never a half-written file.
            temp = f".icreate-{secrets.token_hex(8)}{TEMP_SUFFIX}"
            fd = os.open(temp, WRITE_FLAGS | os.O_EXCL, 0o664, dir_fd=dir_fd)
            try:
                try:
                    _write_all(fd, data)
                    if uid is not None:
                        os.fchown(fd, uid, uid)
                    os.fchmod(fd, 0o664)
                finally:
                    os.close(fd)
                os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=dir_fd)
                raise
            if uid is not None:
                for index in range(len(parts) - 1):
                    with _dir_chain(root_fd, parts[: index + 1], create=False) as sub:
                        os.fchown(sub, uid, uid)
        return True
    finally:
        os.close(root_fd)


def make_scratch(root: Path, parts: list[str], uid: int | None,
                 files: dict[str, bytes]) -> None:
    """Create the directory ``root/parts`` (0700, the sandbox uid's) with ``files`` in it;
    nothing on the way is followed if it is a symlink the sandbox planted."""
    root_fd = os.open(root, DIR_FLAGS)
    try:
        with _dir_chain(root_fd, parts[:-1], create=True) as parent_fd:
            if uid is not None:
                os.fchown(parent_fd, uid, uid)
            os.mkdir(parts[-1], 0o700, dir_fd=parent_fd)
            dir_fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent_fd)
            try:
                for name, data in files.items():
                    fd = os.open(name, WRITE_FLAGS | os.O_EXCL, 0o644, dir_fd=dir_fd)
                    try:
                        _write_all(fd, data)
                        if uid is not None:
                            os.fchown(fd, uid, uid)
                    finally:
                        os.close(fd)
                if uid is not None:
                    os.fchown(dir_fd, uid, uid)
            finally:
                os.close(dir_fd)
    finally:
        os.close(root_fd)


def remove_file(root: Path, rel: str) -> None:
    """Unlink the file at ``rel`` under ``root`` (no symlink followed on the way)."""
    parts = safe_parts(rel)
    if parts is None:
        return
    with contextlib.suppress(OSError):
        root_fd = os.open(root, DIR_FLAGS)
        try:
            with _dir_chain(root_fd, parts[:-1], create=False) as dir_fd:
                os.unlink(parts[-1], dir_fd=dir_fd)
        finally:
            os.close(root_fd)


def remove_scratch(root: Path, parts: list[str]) -> None:
    """Remove ``root/parts`` and what is in it, without following a symlink on the way."""
    with contextlib.suppress(OSError):
        root_fd = os.open(root, DIR_FLAGS)
        try:
            with _dir_chain(root_fd, parts[:-1], create=False) as parent_fd:
                shutil.rmtree(parts[-1], dir_fd=parent_fd, ignore_errors=True)
        finally:
            os.close(root_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def chown_tree(root: Path, uid: int) -> None:
    """Hand every entry of the workdir to the sandbox uid (lchown: links not followed)."""
    root_fd = os.open(root, DIR_FLAGS)
    try:
        os.fchown(root_fd, uid, uid)
        _chown_under(root_fd, uid, depth=0)
    finally:
        os.close(root_fd)


def _chown_under(dir_fd: int, uid: int, depth: int) -> None:
    if depth > 64:
        return
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                os.chown(entry.name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    sub = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                    try:
                        _chown_under(sub, uid, depth + 1)
                    finally:
                        os.close(sub)


@dataclass(frozen=True)
class Found:
    path: str
    data: bytes


@dataclass
class Scan:
    files: list[Found]
    skipped: list[str]  # symlinks, devices, FIFOs, too large, over the count


def scan(root: Path, *, max_file_bytes: int, max_files: int) -> Scan:
    """Every regular file under ``root`` with its bytes; nothing behind a symlink."""
    result = Scan([], [])
    root_fd = os.open(root, DIR_FLAGS)
    try:
        _scan_dir(root_fd, "", result, max_file_bytes, max_files, depth=0)
    finally:
        os.close(root_fd)
    return result


def _scan_dir(dir_fd: int, prefix: str, result: Scan, max_bytes: int, max_files: int,
              depth: int) -> None:
    if depth > 64:
        result.skipped.append(prefix)
        return
    with os.scandir(dir_fd) as iterator:
        entries = sorted(iterator, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if entry.name in IGNORED_DIRS:
                continue
            try:
                sub = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                result.skipped.append(rel)
                continue
            try:
                _scan_dir(sub, rel + "/", result, max_bytes, max_files, depth + 1)
            finally:
                os.close(sub)
            continue
        if not stat.S_ISREG(st.st_mode) or entry.name.endswith(IGNORED_SUFFIXES):
            result.skipped.append(rel)
            continue
        if st.st_size > max_bytes or len(result.files) >= max_files:
            result.skipped.append(rel)
            continue
        data = _read_regular(dir_fd, entry.name, max_bytes)
        if data is None:
            result.skipped.append(rel)
        else:
            result.files.append(Found(rel, data))


def usage(root: Path) -> int:
    """Bytes allocated under ``root`` (blocks, so sparse files count what they use), no
    symlink followed; what the disk watcher compares with a project's quota."""
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError:
        return 0
    try:
        return os.fstat(root_fd).st_blocks * 512 + _usage_under(root_fd, depth=0)
    finally:
        os.close(root_fd)


def _usage_under(dir_fd: int, depth: int) -> int:
    total = 0
    if depth > 64:
        return total
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    total += _usage_under(sub, depth + 1)
                finally:
                    os.close(sub)
    return total


def read_file(root: Path, rel: str, max_bytes: int) -> bytes | None:
    """The bytes of the regular file at ``rel`` under ``root`` (no symlink followed)."""
    parts = safe_parts(rel)
    if parts is None:
        return None
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError:
        return None
    try:
        with _dir_chain(root_fd, parts[:-1], create=False) as dir_fd:
            return _read_regular(dir_fd, parts[-1], max_bytes)
    except OSError:
        return None
    finally:
        os.close(root_fd)


def _read_regular(dir_fd: int, name: str, max_bytes: int) -> bytes | None:
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:  # ELOOP: it became a symlink since the scan
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
