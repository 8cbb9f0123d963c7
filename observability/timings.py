"""Samples of what the server times itself, grouped per period, and their percentiles.

``Timings.observe`` runs on hot paths (every REST request, every database query): a dict
lookup and a list append, no I/O, no await. Memory is bounded: at most ``max_series`` series
per period (later new series are counted in ``overflow`` and dropped) and ``reservoir``
samples per series; past that, reservoir sampling keeps a uniform sample, so the
percentiles stay unbiased while count, sum and max stay exact.

Everything runs on the event loop's thread (the only caller); ``drain`` hands the finished
period to the writer (``observability.metrics_writer``) and starts a new one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

Tags = tuple[tuple[str, str], ...]

# The metric_type values of performance_metrics (seed's four, plus 'execution' from 0085).
API_LATENCY = "api_latency"
DB_QUERY = "db_query"
PAGE_LOAD = "page_load"
AI_RESPONSE = "ai_response"
EXECUTION = "execution"


@dataclass(frozen=True)
class SeriesKey:
    metric_type: str
    name: str
    unit: str
    tags: Tags


class Series:
    """Count, sum and max of every sample, and a bounded uniform sample of the values."""

    __slots__ = ("count", "maximum", "samples", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.maximum = -math.inf
        self.samples: list[float] = []

    def add(self, value: float, reservoir: int) -> None:
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value
        if len(self.samples) < reservoir:
            self.samples.append(value)
        else:
            # Algorithm R: the n-th sample replaces a kept one with probability reservoir/n.
            slot = random.randrange(self.count)
            if slot < reservoir:
                self.samples[slot] = value


@dataclass(frozen=True)
class Aggregate:
    key: SeriesKey
    count: int
    mean: float
    maximum: float
    p50: float
    p95: float
    p99: float


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list (``q`` in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def aggregate(key: SeriesKey, series: Series) -> Aggregate:
    ordered = sorted(series.samples)
    return Aggregate(
        key=key,
        count=series.count,
        mean=series.total / series.count,
        maximum=series.maximum,
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
    )


class Timings:
    def __init__(self, reservoir: int = 2048, max_series: int = 2000) -> None:
        self.reservoir = reservoir
        self.max_series = max_series
        # Plain tuples as keys: cheaper to build per call than a dataclass.
        self.series: dict[tuple[str, str, str, Tags], Series] = {}
        self.overflow = 0

    def observe(
        self, metric_type: str, name: str, value: float, unit: str = "ms", tags: Tags = ()
    ) -> None:
        if not math.isfinite(value):
            return
        key = (metric_type, name, unit, tags)
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= self.max_series:
                self.overflow += 1
                return
            series = self.series[key] = Series()
        series.add(value, self.reservoir)

    def drain(self) -> list[Aggregate]:
        """The aggregates of the period so far; the next period starts empty."""
        finished, self.series = self.series, {}
        self.overflow = 0
        return [aggregate(SeriesKey(*key), s) for key, s in finished.items() if s.count]
