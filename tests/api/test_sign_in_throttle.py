"""Sign-in throttling: per account and ip, per ip, and an account-wide ceiling.

Clients connect from distinct real loopback addresses (127.0.0.x), so "the owner's ip" and
"the attacker's ip" are real socket addresses, not headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from persistence.db import Database
from server.auth.rate_limit import DEFAULT_LIMITS
from tests.api.client import Api
from tests.support.servers import LiveServer


@pytest.fixture
async def client_from(server: LiveServer) -> AsyncIterator[Callable[[str], Api]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str) -> Api:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        sessions.append(session)
        return Api(session, server.url)

    yield make
    for session in sessions:
        await session.close()


async def test_an_attackers_failures_do_not_lock_the_owner_out(
    client_from: Callable[[str], Api],
) -> None:
    owner = client_from("127.0.0.3")
    attacker = client_from("127.0.0.2")
    user = await owner.sign_up()
    for _ in range(DEFAULT_LIMITS.per_account_ip):
        assert (await attacker.sign_in(user.email, "guess")).status == 401
    # The attacker is throttled on this account, even with the right password...
    throttled = await attacker.sign_in(user.email)
    assert throttled.status == 429 and throttled.error_code == "too_many_attempts"
    assert 0 < int(throttled.headers["Retry-After"]) <= DEFAULT_LIMITS.window_s
    # ...while the owner, from their own address, signs in.
    signed_in = await owner.sign_in(user.email)
    assert signed_in.status == 200, signed_in.body
    # So does the owner on a device never seen before (the account is not under a
    # distributed attack: only the attacker's address is throttled).
    assert (await client_from("127.0.0.4").sign_in(user.email)).status == 200
    assert (await attacker.sign_in(user.email, "guess")).status == 429


async def test_a_distributed_attack_leaves_known_addresses_signing_in(
    client_from: Callable[[str], Api], db: Database
) -> None:
    owner = client_from("127.0.0.3")
    user = await owner.sign_up()  # 127.0.0.3 is now an address this account signed in from
    async with db.service() as conn:
        await conn.executemany(
            "insert into public.auth_attempts (email, ip_address, succeeded)"
            " values ($1, $2::inet, false)",
            [(user.email, f"10.9.{i // 200}.{i % 200 + 1}")
             for i in range(DEFAULT_LIMITS.per_account)],
        )
    # Past the account-wide ceiling: an address the account never signed in from waits,
    # without its password being checked...
    stranger = await client_from("127.0.0.5").sign_in(user.email)
    assert stranger.status == 429 and stranger.error_code == "too_many_attempts"
    # ...and the owner's known address still gets in with the right password.
    signed_in = await owner.sign_in(user.email)
    assert signed_in.status == 200, signed_in.body
    assert (await owner.sign_in(user.email, "guess")).status == 401
