"""A git host for tests: bare repositories served over smart HTTP by ``git http-backend``
(git's own CGI program) behind a small aiohttp CGI bridge, with token auth.

- ``/{name}.git/...``: the smart-HTTP protocol (v0/v1/v2: the ``Git-Protocol`` header is
  passed on; gzip-encoded request bodies are handled by http-backend itself).
- Auth: HTTP Basic, any user name, the repository's token as password (GitHub's and
  GitLab's way with personal or OAuth tokens). A repository created without a token is
  readable by anyone and writable by no one. Wrong or missing credentials: 401 with a
  ``WWW-Authenticate`` challenge, which makes the git client ask its askpass helper.
- Helpers create repositories from a dict of files, commit and force-push to them from a
  scratch clone, and read commits back (author, message, files).

Requests, their users and pushes are recorded for assertions (``requests``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.support.net import free_port

GIT = shutil.which("git") or "git"
# The test side's own git calls: no user config, no hooks, a fixed identity.
GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Remote Dev",
    "GIT_AUTHOR_EMAIL": "remote@example.test",
    "GIT_COMMITTER_NAME": "Remote Dev",
    "GIT_COMMITTER_EMAIL": "remote@example.test",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    """Run git on the test side (blocking: setup and assertions only)."""
    done = subprocess.run(
        [GIT, "-c", "init.defaultBranch=main", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd, env={**GIT_ENV, "HOME": str(cwd or "/")}, input=input,
        capture_output=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


@dataclass
class Seen:
    method: str
    path: str
    user: str | None
    status: int


@dataclass
class GitHost:
    root: Path
    port: int = 0
    tokens: dict[str, str | None] = field(default_factory=dict)
    # Also accepted as the password of any repository: e.g. OAuth tokens a fake provider
    # issued (the way GitHub takes its OAuth tokens for git over HTTPS).
    token_check: Callable[[str], bool] | None = None
    requests: list[Seen] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    # ---- serving -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}.git"

    def _user(self, request: web.Request, name: str) -> tuple[bool, str | None]:
        """(allowed, user): a repository's token as the Basic password, or public reads."""
        token = self.tokens.get(name)
        header = request.headers.get("Authorization", "")
        user: str | None = None
        password: str | None = None
        if header.startswith("Basic "):
            with contextlib.suppress(ValueError):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        writing = request.path.endswith("git-receive-pack") or \
            request.query.get("service") == "git-receive-pack"
        if password is not None and self.token_check is not None and self.token_check(password):
            return True, user
        if token is None:
            return (not writing), None
        return password == token, user

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.path.lstrip("/").split(".git", 1)[0]
        if name not in self.tokens or not (self.root / f"{name}.git").is_dir():
            self.requests.append(Seen(request.method, request.path, None, 404))
            return web.Response(status=404, text="no such repository")
        allowed, user = self._user(request, name)
        if not allowed:
            self.requests.append(Seen(request.method, request.path, user, 401))
            return web.Response(status=401, text="authentication required",
                                headers={"WWW-Authenticate": 'Basic realm="git"'})
        body = await request.read()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": user or "",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            GIT, "-c", "http.receivepack=true", "http-backend",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )
        out, _ = await proc.communicate(body)
        head, found, payload = out.partition(b"\r\n\r\n")
        if not found:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        self.requests.append(Seen(request.method, request.path, user, status))
        return web.Response(status=status, body=payload, headers=headers)

    # ---- repositories ------------------------------------------------------------------

    def create(self, name: str, files: Mapping[str, bytes | str] | None = None, *,
               token: str | None = None, message: str = "Initial commit") -> Path:
        bare = self.root / f"{name}.git"
        git("init", "--bare", "--quiet", str(bare))
        self.tokens[name] = token
        if files:
            self.commit(name, files, message=message)
        return bare

    def bare(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def commit(
        self, name: str, files: Mapping[str, bytes | str | None], *,
        message: str = "Remote change", branch: str = "main", force_base: str | None = None,
    ) -> str:
        """Write ``files`` (None deletes) on ``branch`` from a scratch clone and push it
        (``force_base``: start from that commit instead and force-push). The new commit."""
        work = Path(tempfile.mkdtemp(prefix="git-host-work-"))
        try:
            git("clone", "--quiet", "--no-checkout", str(self.bare(name)), str(work))
            has_branch = git("ls-remote", "--heads", str(self.bare(name)), branch, cwd=work)
            if force_base is not None:
                git("checkout", "--quiet", "-B", branch, force_base, cwd=work)
            elif has_branch.strip():
                git("checkout", "--quiet", "-B", branch, f"origin/{branch}", cwd=work)
            else:
                git("checkout", "--quiet", "--orphan", branch, cwd=work)
            removed = [path for path, data in files.items() if data is None]
            if removed:
                git("rm", "--quiet", "--", *removed, cwd=work)
            for path, data in files.items():
                if data is None:
                    continue
                target = work / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.encode() if isinstance(data, str) else data)
            git("add", "--all", cwd=work)
            git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
            git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
            return git("rev-parse", "HEAD", cwd=work).strip()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def head(self, name: str, branch: str = "main") -> str | None:
        out = git("for-each-ref", "--format=%(objectname)", f"refs/heads/{branch}",
                  cwd=self.bare(name)).strip()
        return out or None

    def show(self, name: str, rev: str, path: str) -> bytes:
        done = subprocess.run(
            [GIT, "--git-dir", str(self.bare(name)), "show", f"{rev}:{path}"],
            env={**GIT_ENV, "HOME": "/"}, capture_output=True, check=True,
        )
        return done.stdout

    def log(self, name: str, rev: str = "main") -> list[dict[str, str]]:
        out = git("--git-dir", str(self.bare(name)), "log", "--format=%H%x00%an%x00%ae%x00%cn"
                  "%x00%ce%x00%P%x00%s", rev)
        keys = ("sha", "author_name", "author_email", "committer_name", "committer_email",
                "parents", "subject")
        return [dict(zip(keys, line.split("\0"), strict=True)) for line in out.splitlines()]

    def files(self, name: str, rev: str = "main") -> list[str]:
        out = git("--git-dir", str(self.bare(name)), "ls-tree", "-r", "--name-only",
                  "--full-tree", rev)
        return out.splitlines()

    def write_raw_tree(
        self, name: str, entries: list[tuple[str, str, bytes]], message: str = "raw"
    ) -> str:
        """Commit a tree built with git's plumbing, so it may hold what no checkout can:
        ``(mode, path, data)`` with any segment names (``..``, ``.git``, control
        characters); mode ``120000`` makes ``data`` a symlink target, ``160000`` a
        submodule commit id. Becomes the new ``main``; returns the commit."""
        bare = self.bare(name)

        def blob(data: bytes) -> str:
            return git("--git-dir", str(bare), "hash-object", "-w", "--stdin", input=data).strip()

        def tree(items: list[tuple[str, list[str], bytes]]) -> str:
            lines: list[bytes] = []
            groups: dict[str, list[tuple[str, list[str], bytes]]] = {}
            for mode, parts, data in items:
                if len(parts) == 1:
                    kind, sha = ("commit", data.decode()) if mode == "160000" else \
                        ("blob", blob(data))
                    lines.append(f"{mode} {kind} {sha}\t".encode() + parts[0].encode())
                else:
                    groups.setdefault(parts[0], []).append((mode, parts[1:], data))
            for folder, children in groups.items():
                lines.append(f"040000 tree {tree(children)}\t".encode() + folder.encode())
            return git("--git-dir", str(bare), "mktree", "-z",
                       input=b"".join(line + b"\0" for line in lines)).strip()

        root = tree([(mode, path.split("/"), data) for mode, path, data in entries])
        commit = git("--git-dir", str(bare), "commit-tree", root, "-m", message).strip()
        git("--git-dir", str(bare), "update-ref", "refs/heads/main", commit)
        return commit
