"""Timings: exact counts and nearest-rank percentiles, bounded memory per period."""

from __future__ import annotations

import pytest

from observability.timings import API_LATENCY, Timings, percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([5.0], 50, 5.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0], 99, 2.0),
     ([float(i) for i in range(1, 101)], 95, 95.0), ([float(i) for i in range(1, 101)], 99, 99.0),
     ([float(i) for i in range(1, 11)], 50, 5.0)],
)
def test_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_a_period_is_aggregated_per_series_then_starts_empty() -> None:
    timings = Timings()
    for value in range(1, 101):
        timings.observe(API_LATENCY, "http", float(value), tags=(("route", "GET /a"),))
    timings.observe(API_LATENCY, "http", 7.0, tags=(("route", "GET /b"),))
    timings.observe(API_LATENCY, "http", float("nan"))
    by_route = {dict(a.key.tags).get("route"): a for a in timings.drain()}
    assert set(by_route) == {"GET /a", "GET /b"}
    a = by_route["GET /a"]
    assert (a.count, a.p50, a.p95, a.p99, a.maximum, a.mean) == (100, 50.0, 95.0, 99.0, 100.0, 50.5)
    assert timings.drain() == []


def test_memory_is_bounded_and_counts_stay_exact() -> None:
    timings = Timings(reservoir=64, max_series=2)
    for value in range(10_000):
        timings.observe(API_LATENCY, "http", float(value % 100))
    timings.observe(API_LATENCY, "other", 1.0)
    timings.observe(API_LATENCY, "third", 1.0)  # over max_series: counted, dropped
    assert timings.overflow == 1
    assert max(len(s.samples) for s in timings.series.values()) == 64
    [big] = [a for a in timings.drain() if a.key.name == "http"]
    assert big.count == 10_000 and big.maximum == 99.0 and big.mean == 49.5
    assert 20 <= big.p50 <= 80  # a uniform sample of 0..99
