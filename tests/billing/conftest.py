"""Billing fixtures: the local Stripe-wire server, a live app configured for it, helpers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from billing.config import BillingConfig
from persistence.db import Database
from server.settings import Settings
from tests.api.client import Api, User
from tests.fakes.stripe_server import FakeStripe
from tests.support.servers import LiveServer

# The prices of the plans on the fake (ids as a Stripe dashboard would make them).
PRICES = {"pro": ("price_pro_month", "price_pro_year", 1500, 15000),
          "team": ("price_team_month", "price_team_year", 4000, 40000)}
SET_PRICES = """
update public.subscription_plans set stripe_price_id_monthly = $2, stripe_price_id_yearly = $3
where slug = $1
"""


@pytest.fixture
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    for monthly, yearly, amount, yearly_amount in PRICES.values():
        fake.prices[monthly] = (amount, "month")
        fake.prices[yearly] = (yearly_amount, "year")
    await fake.start()
    yield fake
    await fake.stop()


def billing_settings(settings: Settings, fake: FakeStripe) -> Settings:
    return dataclasses.replace(settings, billing=BillingConfig(
        secret_key=fake.secret_key, webhook_secret=fake.webhook_secret, api_base=fake.url))


@pytest.fixture
async def billing_server(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings,
    fake_stripe: FakeStripe, db: Database,
) -> LiveServer:
    async with db.service() as conn:
        for slug, (monthly, yearly, _, _) in PRICES.items():
            await conn.execute(SET_PRICES, slug, monthly, yearly)
    server = await live_server(billing_settings(settings, fake_stripe))
    fake_stripe.webhook_url = server.url + "/api/v1/webhooks/stripe"
    return server


@pytest.fixture
async def api(billing_server: LiveServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, billing_server.url)


async def owner_with_workspace(api: Api) -> tuple[User, str]:
    user = await api.sign_up()
    workspace = await api.ok("POST", "/workspaces", {"name": "Paid work"}, token=user.token)
    return user, str(workspace["id"])


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 20.0) -> Any:
    """Polls ``check`` until it returns something truthy (jobs run asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout_s}s")
        await asyncio.sleep(0.05)


async def subscription_status(db: Database, user_id: str) -> str | None:
    async with db.acquire() as conn:
        status: str | None = await conn.fetchval(
            "select s.status from public.subscriptions s join public.customers c "
            "on c.id = s.customer_id where c.user_id = $1::uuid", user_id)
    return status


async def webhooks_settled(db: Database) -> bool:
    async with db.acquire() as conn:
        return bool(await conn.fetchval(
            "select count(*) = 0 from public.webhook_logs "
            "where provider = 'stripe' and status <> 'processed'"))


async def subscribe(api: Api, fake: FakeStripe, db: Database, user: User,
                    plan: str = "pro") -> str:
    """Checkout a plan and pay on the fake's page; returns the subscription id once active."""
    session = await api.ok("POST", "/billing/checkout", {"plan": plan}, token=user.token)
    async with aiohttp.ClientSession() as http, http.post(
        f"{session['url']}/pay", allow_redirects=False,
    ) as resp:
        assert resp.status == 303, await resp.text()
    await eventually(lambda: _active(db, user.id))
    await eventually(lambda: webhooks_settled(db))
    return str(fake.sessions[session["id"]]["subscription"])


async def _active(db: Database, user_id: str) -> bool:
    return await subscription_status(db, user_id) == "active"
