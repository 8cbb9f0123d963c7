"""Partition upkeep: next months' partitions ahead of time, expired months dropped.

``PartitionMaintenance`` is owned by the app lifespan: it runs once at startup, then every
24 hours, and is cancelled on shutdown. The SQL functions it calls take a per-table advisory
lock, so several server processes doing this at once are safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from persistence.db import Database

log = logging.getLogger(__name__)

PARTITIONED_TABLES = ("public.analytics_events", "public.api_logs", "public.usage_records")
DEFAULT_MONTHS_AHEAD = 2
DEFAULT_RETENTION_DAYS = 90
MAINTENANCE_INTERVAL_SECONDS = 24 * 60 * 60
RETRY_SECONDS = 300

CREATE_PARTITIONS = "select public.create_monthly_partitions($1::text::regclass, $2)"
DROP_PARTITIONS = (
    "select public.drop_old_partitions($1::text::regclass, make_interval(days => $2))"
)


async def ensure_partitions(
    conn: asyncpg.Connection, months_ahead: int = DEFAULT_MONTHS_AHEAD
) -> list[str]:
    """Create the missing partitions from this month to +months_ahead; return their names."""
    created: list[str] = []
    for table in PARTITIONED_TABLES:
        async with conn.transaction():
            rows = await conn.fetch(CREATE_PARTITIONS, table, months_ahead)
        created.extend(r[0] for r in rows)
    return created


async def drop_expired_partitions(
    conn: asyncpg.Connection, retention_days: int = DEFAULT_RETENTION_DAYS
) -> list[str]:
    """Drop partitions whose whole month is older than the retention; return their names."""
    dropped: list[str] = []
    for table in PARTITIONED_TABLES:
        async with conn.transaction():
            rows = await conn.fetch(DROP_PARTITIONS, table, retention_days)
        dropped.extend(r[0] for r in rows)
    return dropped


class PartitionMaintenance:
    """One background task: maintenance now, then every ``interval`` seconds."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float = MAINTENANCE_INTERVAL_SECONDS,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.db = db
        self.interval = interval
        self.retention_days = retention_days
        self.runs = 0
        self.ran = asyncio.Event()  # set after each successful run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="partition-maintenance")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> None:
        async with self.db.acquire() as conn:
            created = await ensure_partitions(conn)
            dropped = await drop_expired_partitions(conn, self.retention_days)
        self.runs += 1
        self.ran.set()
        if created or dropped:
            log.info("partitions created %s, dropped %s", created, dropped)

    async def _loop(self) -> None:
        while True:
            delay = self.interval
            try:
                await self.run_once()
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                log.exception("partition maintenance failed; retrying in %s s", RETRY_SECONDS)
                delay = min(self.interval, RETRY_SECONDS)
            await asyncio.sleep(delay)
