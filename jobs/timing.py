"""Pure timing rules of the queue: retry backoff and the wake-up payloads of NOTIFY."""

from __future__ import annotations

import random

CHANNEL = "background_jobs"


def retry_delay(
    attempt: int, base_s: float, max_s: float, rand: random.Random | None = None
) -> float:
    """Seconds before retry after failed attempt ``attempt`` (1-based): exponential with
    "equal jitter", i.e. uniformly within [d/2, d] for d = min(max_s, base_s * 2**(attempt-1)).

    Half of it is fixed so a crowd of jobs failing together still backs off; the other half is
    random so they do not come back together.
    """
    exponent = min(max(attempt - 1, 0), 62)
    delay = min(max_s, base_s * (2.0**exponent))
    pick = (rand or random).random()
    return delay / 2 + pick * delay / 2


def wake_payload(job_name: str, due_epoch: float | None) -> str:
    """NOTIFY payload: ``name`` (due now) or ``name@epoch`` (due at that time).

    PostgreSQL delivers identical payloads of one transaction once, so a thousand jobs of one
    name enqueued together wake each worker once.
    """
    return job_name if due_epoch is None else f"{job_name}@{due_epoch:.3f}"


def parse_wake(payload: str) -> tuple[str, float | None]:
    """The inverse of ``wake_payload``; a malformed time reads as "due now"."""
    name, sep, when = payload.partition("@")
    if not sep:
        return name, None
    try:
        return name, float(when)
    except ValueError:
        return name, None
