"""Running the ``git`` CLI with care: asyncio subprocesses, no configuration but ours.

Why the git CLI (and not dulwich): it is the reference implementation of the smart-HTTP
protocol, of authentication, of ``fsck`` on what is received and of packing; dulwich
would parse packs and trees in Python (in this process, holding the GIL while a 5,000
file import runs). Here git does the parsing in its own process, and the server only
reads trees (``ls-tree``) and blobs (``cat-file --batch``) and writes commits
(``fast-import``) in a bare repository: nothing from a repository is ever checked out
onto a disk, so hostile paths (``..``, absolute, ``.git/``, symlinks, case twins) have no
file system to escape into; they are refused path by path when imported.

Every command runs:
- as an asyncio subprocess in its own session (a timeout kills the whole group), with
  stdin closed unless we feed it, and no event-loop blocking;
- with an empty environment except: ``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL``
  = ``/dev/null``, a private ``HOME``, ``GIT_TERMINAL_PROMPT=0``, ``GIT_ALLOW_PROTOCOL``
  (https, plus http only when configured for tests: never ``file``, ``ext`` or ssh);
- with ``-c`` options that disable hooks (``core.hooksPath=/dev/null``), fsmonitor,
  redirects (a token must not follow a redirect to another host), credential helpers,
  automatic gc, submodule recursion, and that turn on ``fsck`` of everything fetched;
- with credentials, when needed, through ``GIT_ASKPASS``: a tiny script that prints the
  user name or token from two variables set in that one child's environment. They never
  appear in a URL, an argument (``/proc/*/cmdline``), a config file or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gitsync.config import GitConfig

ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$ICREATE_GIT_USERNAME" ;;
  *) printf '%s\\n' "$ICREATE_GIT_PASSWORD" ;;
esac
"""
HARDENING = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.protectNTFS=true",
    "core.protectHFS=true",
    "core.symlinks=false",
    "credential.helper=",
    "http.followRedirects=false",
    "protocol.file.allow=never",
    "protocol.ext.allow=never",
    "transfer.fsckObjects=true",
    "fetch.fsckObjects=true",
    "receive.fsckObjects=true",
    "submodule.recurse=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "init.defaultBranch=main",
)
STDERR_KEPT = 4000
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # a token

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


class GitError(Exception):
    """A git command failed. ``message`` is safe to show (no credentials in it)."""

    def __init__(self, command: str, returncode: int | None, stderr: str,
                 stdout: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = redact(stderr)[-STDERR_KEPT:]
        self.stdout = redact(stdout)[-STDERR_KEPT:]  # e.g. push --porcelain's status lines
        tail = self.stderr.strip().splitlines()[-3:]
        reason = " / ".join(line.strip() for line in tail) or "no output"
        status = "timed out" if returncode is None else f"exit {returncode}"
        self.message = f"git {command} failed ({status}): {reason}"
        super().__init__(self.message)

    @property
    def auth_failed(self) -> bool:
        text = self.stderr.lower()
        return "authentication failed" in text or "could not read username" in text or (
            "403" in text and "http" in text
        )


def redact(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)


class Git:
    """One per process: the askpass script and a private ``HOME`` live in a temp dir."""

    def __init__(self, config: GitConfig) -> None:
        self.config = config
        self._home = Path(tempfile.mkdtemp(prefix="icreate-git-home-"))
        self._askpass = self._home / "askpass.sh"
        # Written once, owner-only: 0700 directory, 0700 script.
        self._askpass.write_text(ASKPASS_SCRIPT)
        self._askpass.chmod(stat.S_IRWXU)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._askpass.unlink()
        with contextlib.suppress(OSError):
            self._home.rmdir()

    def environment(self, credentials: Credentials | None) -> dict[str, str]:
        protocols = "https:http" if self.config.allow_http else "https"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": protocols,
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_ASKPASS": "/bin/false",
        }
        if credentials is not None:
            env["GIT_ASKPASS"] = str(self._askpass)
            env["ICREATE_GIT_USERNAME"] = credentials.username
            env["ICREATE_GIT_PASSWORD"] = credentials.password
        return env

    def argv(self, args: Sequence[str], git_dir: Path | None) -> list[str]:
        argv = [self.config.git_binary]
        for option in HARDENING:
            argv += ["-c", option]
        if git_dir is not None:
            argv.append(f"--git-dir={git_dir}")
        return [*argv, *args]

    async def spawn(
        self, args: Sequence[str], *, git_dir: Path | None = None,
        credentials: Credentials | None = None, stdin: bool = False,
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(args, git_dir),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(credentials),
            cwd=str(git_dir) if git_dir is not None else str(self._home),
            start_new_session=True,
        )

    async def run(
        self, args: Sequence[str], *, git_dir: Path | None = None,
        credentials: Credentials | None = None, input: bytes | None = None,
        timeout_s: float | None = None, check: bool = True,
    ) -> bytes:
        """Run one command to its end; its stdout. ``GitError`` on failure or timeout."""
        proc = await self.spawn(args, git_dir=git_dir, credentials=credentials,
                                stdin=input is not None)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input), timeout_s or self.config.command_timeout_s
            )
        except TimeoutError:
            kill(proc)
            await proc.wait()
            raise GitError(args[0], None, "") from None
        except BaseException:
            kill(proc)
            await proc.wait()
            raise
        if check and proc.returncode != 0:
            raise GitError(args[0], proc.returncode, err.decode(errors="replace"),
                           out.decode(errors="replace"))
        return out


def kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the process and anything it started (its own session)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
