"""A bare repository on the server's disk: fetch, read trees and blobs, write and push
commits. No working tree ever exists (see ``gitsync.runner``).

Kept per connected repository under ``GIT_CACHE_DIR`` between operations so fetches are
incremental; losing it costs one full fetch, nothing else (the sync state is in the
database).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitsync.runner import Credentials, Git, GitError, kill

SHA = re.compile(r"^[0-9a-f]{40}$")
TRACKING = "refs/remotes/origin/"
SCRATCH_REF = "refs/icreate/commit"
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"


class RemoteMoved(Exception):
    """The remote branch is no longer at the commit the push was built on."""


@dataclass(frozen=True)
class TreeEntry:
    path: str
    mode: str
    sha: str
    size: int | None  # None for submodules

    @property
    def is_blob(self) -> bool:
        return self.mode in (MODE_FILE, MODE_EXECUTABLE)


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class Change:
    """One path of a commit: ``data`` None deletes it."""

    path: str
    data: bytes | None
    mode: str = MODE_FILE


def _branch_ok(branch: str) -> bool:
    # Refname rules (git check-ref-format) that matter here; and never an option.
    return bool(branch) and not branch.startswith(("-", "/")) and ".." not in branch and all(
        ch not in branch for ch in " ~^:?*[\\\x7f") and not any(ord(ch) < 32 for ch in branch) \
        and not branch.endswith((".lock", "/", ".")) and "@{" not in branch and "//" not in branch


def check_branch(branch: str) -> str:
    if not _branch_ok(branch):
        raise ValueError(f"not a valid branch name: {branch!r}")
    return branch


def quote_path(path: str) -> str:
    """C-style quoting for fast-import (a path may contain spaces or start with '"')."""
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _signature(author: Author, when: int) -> str:
    # Angle brackets and newlines would break the header line: git refuses them too.
    name = re.sub(r"[<>\n]", "", author.name).strip() or author.email
    email = re.sub(r"[<>\n\s]", "", author.email)
    return f"{name} <{email}> {when} +0000"


async def ls_remote(
    git: Git, url: str, credentials: Credentials | None
) -> tuple[str | None, dict[str, str]]:
    """(default branch, {branch: commit}) of a remote repository."""
    out = await git.run(
        ["ls-remote", "--symref", "--", url, "HEAD", "refs/heads/*"], credentials=credentials,
    )
    default: str | None = None
    heads: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            target = line[5:].split("\t", 1)[0]
            if target.startswith("refs/heads/"):
                default = target[len("refs/heads/"):]
            continue
        sha, _, ref = line.partition("\t")
        if SHA.match(sha) and ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/"):]] = sha
    return default, heads


class BareRepo:
    def __init__(self, git: Git, path: Path) -> None:
        self.git = git
        self.path = path

    async def ensure(self) -> None:
        if (self.path / "HEAD").exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No template: no sample hooks, no description, nothing but the object store.
        await self.git.run(["init", "--bare", "--quiet", "--template=", "--", str(self.path)])

    async def remove(self) -> None:
        """Forget the cached repository (a disconnected project)."""
        await asyncio.to_thread(shutil.rmtree, self.path, True)

    async def _run(self, *args: str, **kwargs: object) -> bytes:
        return await self.git.run(list(args), git_dir=self.path, **kwargs)  # type: ignore[arg-type]

    # ---- the remote --------------------------------------------------------------------

    async def fetch(self, url: str, branch: str, credentials: Credentials | None) -> str | None:
        """Fetch ``branch`` (forced: the remote may have been force-pushed); its commit,
        or None when the remote has no such branch (an empty repository)."""
        check_branch(branch)
        await self.ensure()
        try:
            await self._run(
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                "--no-recurse-submodules", "--", url,
                f"+refs/heads/{branch}:{TRACKING}{branch}", credentials=credentials,
            )
        except GitError as exc:
            if "couldn't find remote ref" in exc.stderr:
                return None
            raise
        return await self.resolve(f"{TRACKING}{branch}")

    async def fetch_commit(self, url: str, sha: str, credentials: Credentials | None) -> bool:
        """Fetch one commit by id if the remote still serves it (the base of a sync that
        the cache lost); False when it does not (force-pushed away)."""
        if await self.has_commit(sha):
            return True
        try:
            await self._run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
                            url, sha, credentials=credentials)
        except GitError:
            return False
        return await self.has_commit(sha)

    async def push(
        self, url: str, sha: str, branch: str, expected: str | None,
        credentials: Credentials | None,
    ) -> None:
        """Push ``sha`` to ``branch`` only if the remote branch is still at ``expected``
        (None: it must not exist). ``RemoteMoved`` otherwise."""
        check_branch(branch)
        lease = f"--force-with-lease=refs/heads/{branch}:{expected or ''}"
        try:
            await self._run("push", "--porcelain", "--quiet", "--no-verify", lease, "--", url,
                            f"{sha}:refs/heads/{branch}", credentials=credentials)
        except GitError as exc:
            # --porcelain: "!<TAB>src:dst<TAB>[rejected] (stale info)" on stdout.
            refused = [line for line in exc.stdout.splitlines() if line.startswith("!")]
            if refused and "[remote rejected]" not in refused[0]:
                raise RemoteMoved(branch) from exc
            raise

    # ---- objects -----------------------------------------------------------------------

    async def resolve(self, ref: str) -> str | None:
        out = await self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}",
                              check=False)
        sha = out.decode().strip()
        return sha if SHA.match(sha) else None

    async def has_commit(self, sha: str) -> bool:
        if not SHA.match(sha):
            return False
        return await self.resolve(sha) == sha

    async def tree(self, commit: str) -> list[TreeEntry]:
        """Every entry of the commit's tree, recursively (blobs, symlinks, submodules)."""
        out = await self._run("ls-tree", "-r", "-z", "--full-tree", "--long", commit)
        entries: list[TreeEntry] = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, _kind, sha, size = meta.decode().split()
            path = raw_path.decode("utf-8", errors="surrogateescape")
            entries.append(TreeEntry(path, mode, sha, None if size == "-" else int(size)))
        return entries

    async def blobs(self, shas: Iterable[str]) -> AsyncIterator[tuple[str, bytes]]:
        """(sha, content) of each blob, streamed by one ``cat-file --batch``."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return
        proc = await self.git.spawn(["cat-file", "--batch"], git_dir=self.path, stdin=True)
        assert proc.stdin is not None and proc.stdout is not None

        async def feed() -> None:
            assert proc.stdin is not None
            for start in range(0, len(wanted), 512):
                proc.stdin.write("".join(f"{s}\n" for s in wanted[start:start + 512]).encode())
                await proc.stdin.drain()
            proc.stdin.close()

        feeder = asyncio.create_task(feed())
        try:
            for _ in wanted:
                header = (await proc.stdout.readline()).decode().split()
                if len(header) != 3 or header[1] != "blob":
                    raise GitError("cat-file", None, f"unexpected object header {header!r}")
                data = await proc.stdout.readexactly(int(header[2]) + 1)
                yield header[0], data[:-1]
            await feeder
            if await proc.wait() != 0:
                raise GitError("cat-file", proc.returncode, "")
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            kill(proc)
            await proc.wait()

    async def commit(
        self, parent: str | None, changes: Sequence[Change], author: Author, message: str,
        when: int,
    ) -> str:
        """A commit of ``changes`` on top of ``parent`` (None: a first commit), written by
        ``fast-import`` from one stream; its id. Nothing is checked out."""
        await self.ensure()
        proc = await self.git.spawn(
            ["fast-import", "--quiet", "--force", "--done"], git_dir=self.path, stdin=True
        )
        assert proc.stdin is not None
        signature = _signature(author, when)
        body = message.encode()
        header = (f"commit {SCRATCH_REF}\nauthor {signature}\ncommitter {signature}\n"
                  f"data {len(body)}\n").encode() + body + b"\n"
        if parent is not None:
            header += f"from {parent}\n".encode()
        try:
            proc.stdin.write(header)
            for change in changes:
                if change.data is None:
                    proc.stdin.write(f"D {quote_path(change.path)}\n".encode())
                else:
                    proc.stdin.write(
                        f"M {change.mode} inline {quote_path(change.path)}\n"
                        f"data {len(change.data)}\n".encode()
                    )
                    proc.stdin.write(change.data + b"\n")
                await proc.stdin.drain()
            proc.stdin.write(b"done\n")
            await proc.stdin.drain()
            proc.stdin.close()
            _, err = await asyncio.wait_for(proc.communicate(),
                                            self.git.config.command_timeout_s)
        except BaseException:
            kill(proc)
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise GitError("fast-import", proc.returncode, err.decode(errors="replace"))
        sha = await self.resolve(SCRATCH_REF)
        if sha is None:
            raise GitError("fast-import", 0, "no commit was written")
        return sha
