"""Settings of the observability module (built by ``server.settings`` from the environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ObservabilityConfig:
    # api_logs: one row per REST request, buffered and written in batches.
    api_logs: bool = True
    api_log_buffer: int = 20_000
    api_log_batch: int = 1_000
    api_log_flush_s: float = 1.0
    # performance_metrics: the aggregation period (one row set per period and series).
    metrics_period_s: float = 60.0
    # error_logs.environment and Sentry's environment.
    environment: str = "production"
    sentry_dsn: str | None = None
    error_buffer: int = 1_000
    # POST /api/v1/analytics/events: events per user per minute (all processes together).
    analytics_events_per_minute: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObservabilityConfig:
        return cls(
            api_logs=_bool(env.get("API_LOGS"), True),
            api_log_buffer=int(env.get("API_LOG_BUFFER", "20000")),
            api_log_batch=int(env.get("API_LOG_BATCH", "1000")),
            api_log_flush_s=float(env.get("API_LOG_FLUSH_S", "1.0")),
            metrics_period_s=float(env.get("METRICS_PERIOD_S", "60")),
            environment=env.get("ENVIRONMENT", "production"),
            sentry_dsn=env.get("SENTRY_DSN") or None,
            error_buffer=int(env.get("ERROR_LOG_BUFFER", "1000")),
            analytics_events_per_minute=int(env.get("ANALYTICS_EVENTS_PER_MINUTE", "300")),
        )
