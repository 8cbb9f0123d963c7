"""Hostile repositories must not escape: trees with ``..``, ``.git`` and its disguises,
symlinks pointing out, case twins, odd names; and remotes that are local paths or carry
hooks and ``core.fsmonitor`` in their config."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitsync.config import GitConfig
from gitsync.repo import BareRepo
from gitsync.runner import Git, GitError
from tests.fakes.git_http import GitHost, git
from tests.gitsync.helpers import Stage


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


async def test_trees_git_refuses_fail_the_import_and_write_nothing(
    stage: Stage, git_host: GitHost, tmp_path: Path
) -> None:
    git_host.create("evil/dotdot", token="tok")
    git_host.write_raw_tree("evil/dotdot", [
        ("100644", "ok.txt", b"fine\n"),
        ("100644", "../../escaped.txt", b"escaped\n"),
        ("100755", ".git/hooks/post-checkout", b"#!/bin/sh\ntouch /tmp/pwned-by-hook\n"),
        ("100644", "GIT~1/config", b"[core]\n\tfsmonitor = touch /tmp/pwned-by-hook\n"),
    ])
    connected = await stage.connect(git_host.url("evil/dotdot"), token="tok")
    job = await stage.job(connected["job_id"])
    assert job["status"] == "failed"
    state = await stage.repository()
    assert state["last_error"]["code"] == "unsafe_repository", state["last_error"]
    assert "hasDot" in state["last_error"]["message"]
    assert await stage.tree() == {}
    # Nothing landed anywhere near: no checkout exists, only the cache's object store.
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/pwned-by-hook").exists()
    cache = stage.server.settings.git.cache_dir
    assert not any(name.endswith(("escaped.txt", "post-checkout", "ok.txt"))
                   for name in _files_under(cache))


async def test_unsafe_entries_are_skipped_and_symlinks_never_followed(
    stage: Stage, git_host: GitHost
) -> None:
    git_host.create("evil/links", token="tok")
    git_host.write_raw_tree("evil/links", [
        ("100644", "README.md", b"# ok\n"),
        ("100644", "readme.md", b"# case twin\n"),
        ("120000", "passwd", b"../../../../etc/passwd"),
        ("120000", "src/abs", b"/etc/shadow"),
        ("100644", "src/main.py", b"print('ok')\n"),
        ("100644", "a\\b.txt", b"backslash\n"),
        ("100644", "bell\x07.txt", b"control\n"),
        ("100644", "rtl\u202etxt.exe", b"bidi\n"),
        ("160000", "vendor/lib", b"1" * 40),
    ])
    connected = await stage.connect(git_host.url("evil/links"), token="tok")
    job = await stage.job(connected["job_id"])
    assert job["status"] == "completed", job
    tree = await stage.tree()
    assert {p for p, f in tree.items() if f["type"] == "file"} == {"README.md", "src/main.py"}
    skipped = {s["path"]: s["reason"] for s in job["output"]["skipped"]}
    assert set(skipped) >= {"readme.md", "passwd", "src/abs", "a\\b.txt", "bell\x07.txt",
                            "rtl\u202etxt.exe", "vendor/lib"}
    assert "case" in skipped["readme.md"] and "symlink" in skipped["passwd"]
    assert not Path("/tmp/pwned").exists()
    # A push keeps what was skipped: the symlinks and the submodule stay in the remote.
    await stage.api.ok("PUT", f"/files/{tree['src/main.py']['id']}/content",
                       {"content": "print('changed')\n"}, token=stage.owner.token)
    job = await stage.push("Edit next to hostile entries")
    assert job["status"] == "completed", job
    remote = set(git_host.files("evil/links"))
    assert {"passwd", "src/abs", "readme.md", "vendor/lib"} <= remote
    out = git("--git-dir", str(git_host.bare("evil/links")), "ls-tree", "main", "passwd")
    assert out.startswith("120000")


async def test_the_runner_refuses_local_remotes_and_their_config(tmp_path: Path) -> None:
    # A local repository whose config would run commands on clone (the 2024 CVEs' vector).
    evil = tmp_path / "evil.git"
    git("init", "--bare", "--quiet", str(evil))
    marker = tmp_path / "pwned"
    (evil / "config").write_text(
        (evil / "config").read_text()
        + f"[core]\n\tfsmonitor = touch {marker}\n\thooksPath = {tmp_path}\n"
    )
    (tmp_path / "post-checkout").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "post-checkout").chmod(0o755)
    runner = Git(GitConfig(cache_dir=tmp_path / "cache", allowed_hosts=("127.0.0.1",),
                           allow_http=True))
    repo = BareRepo(runner, tmp_path / "cache" / "r.git")
    try:
        for url in (str(evil), f"file://{evil}", f"ext::sh -c touch% {marker}"):
            try:
                await repo.fetch(url, "main", None)
            except GitError as exc:
                assert "not allowed" in exc.stderr or "transport" in exc.stderr, exc.stderr
            else:
                raise AssertionError(f"{url} was fetched")
        assert not marker.exists()
        # The runner's environment carries no user or system config and no prompt.
        env = runner.environment(None)
        assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
        assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ALLOW_PROTOCOL"] == "https:http"
        assert "DATABASE_URL" not in env and "JWT_SECRET" not in env
        argv = runner.argv(["status"], None)
        assert "core.hooksPath=/dev/null" in argv and "protocol.file.allow=never" in argv
        # Our own bare repositories have no hooks directory and no sample hooks.
        await repo.ensure()
        assert not (repo.path / "hooks").exists()
        config = subprocess.run(["git", "config", "--file", str(repo.path / "config"), "-l"],
                                capture_output=True, text=True, check=True).stdout
        assert "fsmonitor" not in config and "hookspath" not in config.lower()
    finally:
        runner.close()
