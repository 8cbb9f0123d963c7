"""The pure rules: retry backoff and NOTIFY payloads."""

from __future__ import annotations

import random

import pytest

from jobs.timing import parse_wake, retry_delay, wake_payload


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "low", "high"),
    [
        (1, 1.0, 300.0, 0.5, 1.0),
        (2, 1.0, 300.0, 1.0, 2.0),
        (5, 1.0, 300.0, 8.0, 16.0),
        (12, 1.0, 300.0, 150.0, 300.0),  # capped
        (1000, 0.1, 60.0, 30.0, 60.0),  # no overflow on absurd attempt counts
        (0, 2.0, 10.0, 1.0, 2.0),
    ],
)
def test_retry_delay_is_exponential_with_half_of_it_jittered(
    attempt: int, base: float, cap: float, low: float, high: float
) -> None:
    rand = random.Random(7)
    delays = [retry_delay(attempt, base, cap, rand) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 2  # actually spread, not constant


@pytest.mark.parametrize(
    ("name", "due", "payload"),
    [
        ("git.sync", None, "git.sync"),
        ("maintenance.partitions", 1700000000.25, "maintenance.partitions@1700000000.250"),
    ],
)
def test_wake_payload_round_trips(name: str, due: float | None, payload: str) -> None:
    assert wake_payload(name, due) == payload
    assert parse_wake(payload) == (name, due)


def test_a_malformed_due_time_reads_as_due_now() -> None:
    assert parse_wake("x@soon") == ("x", None)
