"""performance_metrics: one owned task turns each period's timings into rows.

Periods are aligned to the wall clock (multiples of ``period_s`` since the epoch, so with the
default 60 s they are calendar minutes). At each boundary the task drains ``Timings`` and
inserts, per series, three rows ``<name>.p50``, ``.p95``, ``.p99`` stamped with the period's
start; their tags carry the series' own tags plus ``count``, ``mean``, ``max``, ``period_s``
and this process's ``instance`` (each process writes its own rows; the operator page weights
instances by count). The partial period is written on stop.

The samples live in this process's memory, so this is an owned task and not a recurring job:
a job would run in whichever worker claimed it, which does not hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from observability.timings import Aggregate, Timings
from persistence.db import Database
from persistence.observability import insert_performance_metrics

log = logging.getLogger(__name__)

MetricRow = tuple[str, str, float, str, dict[str, Any], datetime]


def period_start(now: float, period_s: float) -> float:
    return math.floor(now / period_s) * period_s


def rows_for(
    aggregates: list[Aggregate], started: float, period_s: float, instance: str
) -> list[MetricRow]:
    at = datetime.fromtimestamp(started, UTC)
    rows: list[MetricRow] = []
    for agg in aggregates:
        key = agg.key
        tags: dict[str, Any] = {
            **dict(key.tags), "count": agg.count, "mean": round(agg.mean, 3),
            "max": round(agg.maximum, 3), "period_s": period_s, "instance": instance,
        }
        for stat, value in (("p50", agg.p50), ("p95", agg.p95), ("p99", agg.p99)):
            rows.append((f"{key.name}.{stat}", key.metric_type, round(value, 3), key.unit,
                         tags, at))
    return rows


class MetricsWriter:
    def __init__(
        self, db: Database, timings: Timings, *, period_s: float, instance: str
    ) -> None:
        self.db = db
        self.timings = timings
        self.period_s = period_s
        self.instance = instance
        self._current = period_start(time.time(), period_s)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-writer")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write the partial period and end the task (cancelled past ``timeout_s``)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:
                log.warning("performance_metrics: the last period was not written in time")
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            boundary = self._current + self.period_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, boundary - time.time())):
                    await self._stopping.wait()
            await self.write_period()

    async def write_period(self) -> int:
        """Drain the current period and insert its rows; the number of rows written."""
        started = self._current
        self._current = period_start(time.time(), self.period_s)
        rows = rows_for(self.timings.drain(), started, self.period_s, self.instance)
        if not rows:
            return 0
        try:
            async with self.db.service() as conn:
                await insert_performance_metrics(conn, rows)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("performance_metrics: %d rows not written", len(rows), exc_info=True)
            return 0
        return len(rows)
