"""Limits and switches of the git integration (built by ``server.settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org")


@dataclass(frozen=True)
class GitConfig:
    git_binary: str = "git"
    # Bare repositories kept between operations (a cache: losing it costs a fetch).
    cache_dir: Path = Path(".data/git")
    # Hosts a repository URL may point at (the server fetches what users name: no
    # internal addresses). Tests add 127.0.0.1; self-hosted GitLab adds its host.
    allowed_hosts: tuple[str, ...] = DEFAULT_HOSTS
    # Plain http:// remotes (local test servers only).
    allow_http: bool = False
    # One git command (clone of a large repository included) may run this long.
    command_timeout_s: float = 600.0
    # A repository with more files than this is refused at import.
    max_files: int = 20_000
    # Files larger than this are left out of an import (listed as skipped).
    max_file_bytes: int = 100 * 1024 * 1024
    # At most this many file.* events per sync; past it one ``git.tree_changed`` event
    # tells clients to list the tree again.
    max_file_events: int = 200

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> GitConfig:
        d = cls()
        hosts = env.get("GIT_ALLOWED_HOSTS")
        return cls(
            git_binary=env.get("GIT_BINARY", d.git_binary),
            cache_dir=Path(env.get("GIT_CACHE_DIR") or data_dir / "git"),
            allowed_hosts=tuple(h.strip().lower() for h in hosts.split(",") if h.strip())
            if hosts is not None else d.allowed_hosts,
            allow_http=env.get("GIT_ALLOW_HTTP", "0").lower() in {"1", "true", "yes"},
            command_timeout_s=float(env.get("GIT_COMMAND_TIMEOUT", d.command_timeout_s)),
            max_files=int(env.get("GIT_MAX_FILES", d.max_files)),
            max_file_bytes=int(env.get("GIT_MAX_FILE_BYTES", d.max_file_bytes)),
            max_file_events=int(env.get("GIT_MAX_FILE_EVENTS", d.max_file_events)),
        )
