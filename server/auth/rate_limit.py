"""Brute-force limits on sign-in, kept in PostgreSQL so every server process sees them.

Nobody can lock someone else out by failing on purpose. The rule, within a sliding
``window_s`` (15 minutes), checked before the password:

1. **Account + ip**: after ``per_account_ip`` (5) failures for an email from one ip since
   that ip's last success for it, that ip waits until the oldest of them leaves the window.
   The owner at another address is not affected.
2. **Ip**: after ``per_ip`` (50) failures from one ip, for any emails, that ip waits.
3. **Account ceiling** (guessing spread over many ips): after ``per_account`` (100) failures
   for an email from anywhere, only ips the account signed in from within ``known_ip_s``
   (90 days; its sessions' addresses) may still try; others wait until the failures fall
   back under the ceiling. The owner at a usual address always gets in with the right
   password; a new address may have to wait while the attack goes on.

A waiting caller gets 429 with ``Retry-After``, and the password is not checked at all (a
correct guess would otherwise still be confirmed). Without a client address (none known),
rules 1 and 2 count the attempts without one together, and rule 3 treats it as unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from persistence import accounts
from persistence.db import Database
from server.errors import ApiError


@dataclass(frozen=True)
class SignInLimits:
    per_account_ip: int = 5
    per_ip: int = 50
    per_account: int = 100
    window_s: int = 15 * 60
    known_ip_s: int = 90 * 24 * 3600


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
    """Raise 429 when this attempt is over one of the budgets of the module docstring."""
    async with db.acquire() as conn:
        pair, pair_retry, account, account_retry = await accounts.account_failures(
            conn, email, ip_address, limits.window_s
        )
        if pair >= limits.per_account_ip:
            raise too_many(pair_retry)
        if ip_address is not None:
            failures, retry_after = await accounts.ip_failures(conn, ip_address, limits.window_s)
            if failures >= limits.per_ip:
                raise too_many(retry_after)
        if account >= limits.per_account and not (
            ip_address is not None
            and await accounts.known_ip(conn, email, ip_address, limits.known_ip_s)
        ):
            raise too_many(account_retry)


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
