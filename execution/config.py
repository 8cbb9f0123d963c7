"""How code is run: the local sandbox or Judge0."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExecutionConfig:
    backend: str = "sandbox"
    judge0_url: str | None = None
    judge0_auth_header: str = "X-Auth-Token"
    judge0_auth_token: str | None = None
    workdir_root: Path = Path(".data/workspaces")
    terminal_network: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> ExecutionConfig:
        judge0_url = env.get("JUDGE0_URL") or None
        return cls(
            backend=env.get("EXECUTION_BACKEND", "judge0" if judge0_url else "sandbox"),
            judge0_url=judge0_url,
            judge0_auth_header=env.get("JUDGE0_AUTH_HEADER", "X-Auth-Token"),
            judge0_auth_token=env.get("JUDGE0_AUTH_TOKEN") or None,
            workdir_root=data_dir / "workspaces",
            terminal_network=env.get("TERMINAL_NETWORK", "0").lower() in {"1", "true", "yes"},
        )
