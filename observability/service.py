"""One object the app starts and stops: the api_logs writer, the error reporter, the timings
and their per-period writer.

Built with the app (the request middleware holds it from the start), started in the lifespan
once the database is up, stopped last so the other parts' final errors are still recorded.
Before ``start`` and after ``stop`` the hot-path calls still work: timings are kept in memory,
api_logs entries are not buffered, errors are logged only.
"""

from __future__ import annotations

import logging

from observability.api_log import ApiLogWriter, RawEntry
from observability.config import ObservabilityConfig
from observability.errors import ErrorReporter
from observability.metrics_writer import MetricsWriter
from observability.sentry import Sentry
from observability.timings import DB_QUERY, Timings
from persistence.db import Database

log = logging.getLogger(__name__)


class Observability:
    def __init__(self, config: ObservabilityConfig, *, instance_id: str, release: str) -> None:
        self.config = config
        self.instance_id = instance_id
        self.release = release
        self.timings = Timings()
        self.api_logs: ApiLogWriter | None = None
        self.errors: ErrorReporter | None = None
        self.metrics: MetricsWriter | None = None

    def observe_query(self, elapsed_s: float) -> None:
        """The database pool's query observer: every query's time (``db.query``)."""
        self.timings.observe(DB_QUERY, "db.query", elapsed_s * 1000)

    def log_request(self, entry: RawEntry) -> None:
        if self.api_logs is not None:
            self.api_logs.append(entry)

    async def start(self, db: Database) -> None:
        config = self.config
        sentry = None
        if config.sentry_dsn:
            try:
                sentry = Sentry(
                    config.sentry_dsn, environment=config.environment,
                    release=f"icreate@{self.release}", server_name=self.instance_id,
                )
            except ImportError:
                log.error("SENTRY_DSN is set but sentry-sdk is not installed "
                          "(pip install 'icreate[sentry]'): errors go to error_logs only")
        self.errors = ErrorReporter(
            db, environment=config.environment, instance_id=self.instance_id,
            capacity=config.error_buffer, sentry=sentry,
        )
        self.errors.start()
        if config.api_logs:
            self.api_logs = ApiLogWriter(
                db, capacity=config.api_log_buffer, batch=config.api_log_batch,
                flush_s=config.api_log_flush_s,
            )
            self.api_logs.start()
        self.metrics = MetricsWriter(
            db, self.timings, period_s=config.metrics_period_s, instance=self.instance_id
        )
        self.metrics.start()

    async def stop(self) -> None:
        api_logs, metrics, errors = self.api_logs, self.metrics, self.errors
        self.api_logs = self.metrics = None
        if api_logs is not None:
            await api_logs.stop()
        if metrics is not None:
            await metrics.stop()
        if errors is not None:
            await errors.stop()
            self.errors = None
