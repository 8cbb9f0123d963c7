"""Preview settings (``PREVIEW_*`` in the environment, read once by ``server.settings``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class PreviewConfig:
    # Where browsers reach previews: each preview is ``<label>.<host of the origin>``, so
    # every project's app has an origin of its own, never the IDE's. None: derived from
    # the port the preview listener got (``http://localhost:<port>``).
    origin: str | None = None
    # Where this process listens for the preview origin (port 0: any free port, the
    # default of the dataclass so tests never collide; the environment's default is
    # PORT + 1).
    host: str = "127.0.0.1"
    port: int = 0
    enabled: bool = True
    idle_stop_s: float = 900.0
    memory_kb: int = 512 * 1024
    cpu_time_s: float = 3600.0  # per process of the app: long-lived servers
    max_processes: int = 128
    start_timeout_s: float = 20.0
    build_timeout_s: float = 300.0
    log_bytes: int = 64 * 1024  # kept per deployment (the tail) and per running preview
    watch_interval_s: float = 0.2
    rescan_interval_s: float = 2.0  # new or deleted files (edits are seen every watch tick)
    kept_deployments: int = 5  # builds kept on disk per project and environment (rollback)
    # Vercel: how long a deployment may take to be READY, and the poll period.
    vercel_timeout_s: float = 600.0
    vercel_poll_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], server_port: int) -> PreviewConfig:
        port = int(env.get("PREVIEW_PORT", str(server_port + 1)))
        origin = env.get("PREVIEW_ORIGIN") or None
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in {
                "", "/"
            }:
                raise ValueError(f"PREVIEW_ORIGIN: {origin!r} is not an origin like "
                                 "http://localhost:8001")
            origin = f"{parts.scheme}://{parts.netloc}"
        return cls(
            origin=origin,
            host=env.get("PREVIEW_HOST", "127.0.0.1"),
            port=port,
            enabled=env.get("PREVIEW_ENABLED", "1").strip().lower() not in {"0", "false", "no"},
            idle_stop_s=float(env.get("PREVIEW_IDLE_STOP", "900")),
            memory_kb=int(env.get("PREVIEW_MEMORY_KB", str(512 * 1024))),
            start_timeout_s=float(env.get("PREVIEW_START_TIMEOUT", "20")),
            build_timeout_s=float(env.get("PREVIEW_BUILD_TIMEOUT", "300")),
            log_bytes=int(env.get("PREVIEW_LOG_BYTES", str(64 * 1024))),
            vercel_timeout_s=float(env.get("VERCEL_DEPLOY_TIMEOUT", "600")),
        )
