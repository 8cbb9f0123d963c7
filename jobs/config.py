"""Worker settings (built by ``server.settings`` from the environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 10  # jobs one worker process runs at once
    poll_interval_s: float = 5.0  # fallback claim when no NOTIFY came (lost listener)
    lease_s: float = 30.0  # a running job is taken back this long after its last heartbeat
    shutdown_grace_s: float = 10.0  # on stop, running jobs get this long before release

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.poll_interval_s <= 0 or self.lease_s <= 0:
            raise ValueError("concurrency, poll interval and lease must be positive")


@dataclass(frozen=True)
class JobsConfig:
    # The server process runs one worker inside unless this is off (workers run apart).
    worker_in_process: bool = True
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobsConfig:
        flag = env.get("JOBS_WORKER_IN_PROCESS", "1").strip().lower()
        return cls(
            worker_in_process=flag not in {"0", "false", "no", "off"},
            worker=WorkerConfig(
                concurrency=int(env.get("JOBS_CONCURRENCY", "10")),
                poll_interval_s=float(env.get("JOBS_POLL_INTERVAL", "5")),
                lease_s=float(env.get("JOBS_LEASE", "30")),
                shutdown_grace_s=float(env.get("JOBS_SHUTDOWN_GRACE", "10")),
            ),
        )
