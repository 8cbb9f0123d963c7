"""Brute-force limits on sign-in, kept in PostgreSQL so every server process sees them.

An account is locked after ``per_account`` failures since its last success within the window;
an ip after ``per_ip`` failures within the window. While locked, the password is not checked
at all (a correct guess would otherwise still be confirmed) and the caller gets 429 with
``Retry-After``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from persistence import accounts
from persistence.db import Database
from server.errors import ApiError


@dataclass(frozen=True)
class SignInLimits:
    per_account: int = 5
    per_ip: int = 50
    window_s: int = 15 * 60


DEFAULT_LIMITS = SignInLimits()


@dataclass(frozen=True)
class SignUpLimits:
    per_ip: int = 20
    window_s: int = 3600


DEFAULT_SIGN_UP_LIMITS = SignUpLimits()


def too_many(
    retry_after_s: float,
    code: str = "too_many_attempts",
    message: str = "too many failed sign-in attempts; try again later",
) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(429, code, message, headers={"Retry-After": str(seconds)})


async def check_sign_in_allowed(
    db: Database, email: str, ip_address: str | None, limits: SignInLimits = DEFAULT_LIMITS
) -> None:
    """Raise 429 when the account or the ip is over its failure budget."""
    async with db.acquire() as conn:
        failures, retry_after = await accounts.email_failures(conn, email, limits.window_s)
        if failures >= limits.per_account:
            raise too_many(retry_after)
        if ip_address is not None:
            failures, retry_after = await accounts.ip_failures(conn, ip_address, limits.window_s)
            if failures >= limits.per_ip:
                raise too_many(retry_after)


async def record_sign_in(
    db: Database,
    email: str,
    ip_address: str | None,
    succeeded: bool,
) -> None:
    # Old rows are deleted by the hourly maintenance.auth_attempts job (jobs/maintenance.py).
    async with db.service() as conn:
        await accounts.record_attempt(conn, email, ip_address, succeeded)


async def admit_sign_up(
    db: Database, email: str, ip_address: str | None,
    limits: SignUpLimits = DEFAULT_SIGN_UP_LIMITS,
) -> None:
    """Count this sign-up attempt against its ip, or raise 429 when the ip is over budget.

    Every attempt counts, a refused duplicate email too: the 409 must not be an oracle
    that can be asked at full speed.
    """
    if ip_address is None:
        return
    async with db.service() as conn:
        count, retry_after = await accounts.ip_sign_ups(conn, ip_address, limits.window_s)
        if count >= limits.per_ip:
            raise too_many(
                retry_after, "too_many_sign_ups", "too many sign-ups from this address; try later"
            )
        await accounts.record_attempt(conn, email, ip_address, True, kind="sign_up")
