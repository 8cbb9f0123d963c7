"""How code is run: the local sandbox or Judge0, and the limits that apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _choice(value: str | None, allowed: tuple[str, ...], default: str) -> str:
    if not value:
        return default
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class ExecutionConfig:
    backend: str = "sandbox"
    judge0_url: str | None = None
    judge0_auth_header: str = "X-Auth-Token"
    judge0_auth_token: str | None = None
    judge0_poll_deadline_s: float = 60.0
    workdir_root: Path = Path(".data/workspaces")
    storage_root: Path = Path(".data/storage")
    terminal_network: bool = False
    bwrap_path: str = "bwrap"
    # The sandbox runs as one unprivileged uid per project, from this range (root only).
    sandbox_uid_base: int = 200_000
    sandbox_uid_count: int = 10_000
    # Default and maximum limits of one run (a request may lower them, never raise them).
    cpu_time_s: float = 5.0
    max_cpu_time_s: float = 15.0
    wall_time_s: float = 10.0
    max_wall_time_s: float = 30.0
    memory_kb: int = 256 * 1024
    max_memory_kb: int = 1024 * 1024
    max_processes: int = 64
    max_file_size_kb: int = 8 * 1024
    max_output_bytes: int = 1024 * 1024
    compile_cpu_time_s: float = 20.0
    compile_wall_time_s: float = 40.0
    compile_memory_kb: int = 2 * 1024 * 1024
    # Workspace sync: files larger than this are not materialized or brought back.
    max_sync_file_bytes: int = 10 * 1024 * 1024
    max_inline_file_bytes: int = 1024 * 1024
    max_sync_files: int = 2000
    # The run queue (execution/scheduler.py): slots of this process, caps per user and per
    # project, runs one user may have waiting; "fair" (tenants take turns) or "fifo".
    max_concurrent_runs: int = 8
    max_runs_per_user: int = 4
    max_runs_per_project: int = 4
    max_queued_per_user: int = 32
    run_queue: str = "fair"
    # Disk: what one project may keep (workdir, files, storage); how it is enforced
    # ("auto": a loop-mounted image per project when root, else a watcher; "watch").
    project_disk_quota_bytes: int = 1024 * 1024 * 1024
    disk_enforcement: str = "auto"
    disk_volume_idle_s: float = 60.0
    # Terminals.
    terminal_idle_timeout_s: float = 300.0
    terminal_scrollback_bytes: int = 256 * 1024
    # Unsent bytes one client may hold back (sockets.outbox). At least the transport's
    # high-water mark (64 KiB): its drain is what resumes a PTY paused for slow clients.
    terminal_send_buffer_bytes: int = 1024 * 1024
    terminal_command_output_bytes: int = 64 * 1024
    terminal_max_per_project: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> ExecutionConfig:
        judge0_url = env.get("JUDGE0_URL") or None
        return cls(
            backend=env.get("EXECUTION_BACKEND", "judge0" if judge0_url else "sandbox"),
            judge0_url=judge0_url,
            judge0_auth_header=env.get("JUDGE0_AUTH_HEADER", "X-Auth-Token"),
            judge0_auth_token=env.get("JUDGE0_AUTH_TOKEN") or None,
            judge0_poll_deadline_s=float(env.get("JUDGE0_POLL_DEADLINE", "60")),
            workdir_root=data_dir / "workspaces",
            storage_root=data_dir / "storage",
            terminal_network=_flag(env.get("TERMINAL_NETWORK"), False),
            bwrap_path=env.get("BWRAP_PATH", "bwrap"),
            cpu_time_s=float(env.get("EXECUTION_CPU_TIME", "5")),
            wall_time_s=float(env.get("EXECUTION_WALL_TIME", "10")),
            memory_kb=int(env.get("EXECUTION_MEMORY_KB", str(256 * 1024))),
            max_processes=int(env.get("EXECUTION_MAX_PROCESSES", "64")),
            max_output_bytes=int(env.get("EXECUTION_MAX_OUTPUT", str(1024 * 1024))),
            max_concurrent_runs=int(env.get("EXECUTION_MAX_CONCURRENT", "8")),
            max_runs_per_user=int(env.get("EXECUTION_MAX_PER_USER", "4")),
            max_runs_per_project=int(env.get("EXECUTION_MAX_PER_PROJECT", "4")),
            max_queued_per_user=int(env.get("EXECUTION_MAX_QUEUED_PER_USER", "32")),
            run_queue=_choice(env.get("EXECUTION_QUEUE"), ("fair", "fifo"), "fair"),
            terminal_idle_timeout_s=float(env.get("TERMINAL_IDLE_TIMEOUT", "300")),
            project_disk_quota_bytes=int(
                env.get("PROJECT_DISK_QUOTA_BYTES", str(1024 * 1024 * 1024))
            ),
            disk_enforcement=_choice(
                env.get("PROJECT_DISK_ENFORCEMENT"), ("auto", "watch"), "auto"
            ),
        )
