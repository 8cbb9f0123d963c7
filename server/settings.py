"""One Settings object, built from the environment once and passed down.

Nothing else in the project reads the environment: packages receive their own
config dataclass (``CollabConfig``, ``AIConfig``, ``ExecutionConfig``) from here.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ai.config import AIConfig
from billing.config import BillingConfig
from collab.config import CollabConfig
from execution.config import ExecutionConfig
from gitsync.config import GitConfig
from jobs.config import JobsConfig
from observability.config import ObservabilityConfig
from preview.config import PreviewConfig
from server.integrations.config import IntegrationsConfig
from server.oauth.config import OAuthConfig
from storage.config import StorageConfig

DEFAULT_ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")


def _csv(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _trusted_proxies(value: str | None) -> tuple[str, ...]:
    """``TRUSTED_PROXIES``: addresses or networks; a typo fails at start-up, not silently."""
    items = _csv(value, ())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {item!r} is not an ip address or network"
            ) from None
    return items


def _persistent_secret(data_dir: Path) -> str:
    """A development JWT secret kept in the data dir so tokens survive restarts."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "icreate:"
    jwt_secret: str = "dev-insecure-secret-change-me-please-0123456789"
    jwt_audience: str = "authenticated"
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (load balancers). Empty:
    # the socket's peer is the client, whatever headers it sends.
    trusted_proxies: tuple[str, ...] = ()
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = 8000
    # Issue 21's trial: document sockets also served by picows on this port (0: any free
    # port); None: off (server/ws/picows_docs.py). picows comes with the dev extra only.
    picows_docs_port: int | None = None
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    encryption_keys: tuple[str, ...] = ()
    db_pool_min: int = 2
    db_pool_max: int = 10
    max_request_bytes: int = 10 * 1024 * 1024
    log_level: str = "info"
    collab: CollabConfig = field(default_factory=CollabConfig)
    ai: AIConfig = field(default_factory=AIConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    oauth: OAuthConfig = field(default_factory=OAuthConfig)
    integrations: IntegrationsConfig = field(default_factory=IntegrationsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    git: GitConfig = field(default_factory=GitConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("DATA_DIR", ".data")).resolve()
        jwt_secret = env.get("JWT_SECRET") or _persistent_secret(data_dir)
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX", "icreate:"),
            jwt_secret=jwt_secret,
            jwt_audience=env.get("JWT_AUDIENCE", "authenticated"),
            access_token_ttl_s=int(env.get("ACCESS_TOKEN_TTL", "3600")),
            refresh_token_ttl_s=int(env.get("REFRESH_TOKEN_TTL", str(30 * 24 * 3600))),
            allowed_origins=_csv(env.get("ALLOWED_ORIGINS"), DEFAULT_ORIGINS),
            trusted_proxies=_trusted_proxies(env.get("TRUSTED_PROXIES")),
            data_dir=data_dir,
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "8000")),
            picows_docs_port=int(env["DOC_PICOWS_PORT"]) if env.get("DOC_PICOWS_PORT") else None,
            instance_id=env.get("INSTANCE_ID") or uuid.uuid4().hex[:16],
            encryption_keys=_csv(env.get("ENCRYPTION_KEYS"), ()),
            db_pool_min=int(env.get("DB_POOL_MIN", "2")),
            db_pool_max=int(env.get("DB_POOL_MAX", "10")),
            max_request_bytes=int(env.get("MAX_REQUEST_BYTES", str(10 * 1024 * 1024))),
            log_level=env.get("LOG_LEVEL", "info"),
            collab=CollabConfig.from_env(env),
            ai=AIConfig.from_env(env, data_dir),
            execution=ExecutionConfig.from_env(env, data_dir),
            oauth=OAuthConfig.from_env(env),
            integrations=IntegrationsConfig.from_env(env),
            jobs=JobsConfig.from_env(env),
            storage=StorageConfig.from_env(env, data_dir),
            git=GitConfig.from_env(env, data_dir),
            observability=ObservabilityConfig.from_env(env),
            preview=PreviewConfig.from_env(env, int(env.get("PORT", "8000"))),
            billing=BillingConfig.from_env(env),
        )


