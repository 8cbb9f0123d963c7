"""Billing in a real Chromium: two people in the owner's workspace; the member's new project
moves the owner's usage bar (the owner pays), the owner upgrades through the (fake) Stripe
Checkout, comes back, and the bars are measured against the pro plan. Screenshots in
``test-artifacts/e2e/billing/``."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from persistence.db import Database
from server.settings import Settings
from tests.billing.conftest import PRICES, SET_PRICES, billing_settings
from tests.e2e.harness import PASSWORD, Api, IdeServer, run_browser, start_ide_server
from tests.fakes.stripe_server import FakeStripe

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def exec_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="icreate-e2e-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    for monthly, yearly, amount, yearly_amount in PRICES.values():
        fake.prices[monthly] = (amount, "month")
        fake.prices[yearly] = (yearly_amount, "year")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def ide(
    settings: Settings, exec_root: Path, fake_stripe: FakeStripe, db: Database
) -> AsyncIterator[IdeServer]:
    async with db.service() as conn:
        for slug, (monthly, yearly, _, _) in PRICES.items():
            await conn.execute(SET_PRICES, slug, monthly, yearly)
    server = await start_ide_server(billing_settings(settings, fake_stripe), exec_root)
    fake_stripe.webhook_url = server.url + "/api/v1/webhooks/stripe"
    yield server
    await server.stop()


async def test_the_owner_upgrades_in_checkout_and_the_usage_bars_move(
    ide: IdeServer, fake_stripe: FakeStripe
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as http:
        api = Api(ide.url, http)
        alice = await api.sign_up(f"alice-{tag}@example.com", "Alice")
        bob = await api.sign_up(f"bob-{tag}@example.com", "Bob")
        stage = await api.shared_project(alice, bob)
    users = [{"email": u.email, "password": PASSWORD, "name": u.name} for u in (alice, bob)]
    result = await run_browser("billing", {
        "url": ide.url, "project_id": stage["project"]["id"], "users": users})

    free, after_bob, pro = result["free"], result["afterBob"], result["pro"]
    assert result["freePlan"].startswith("Free plan")
    assert (free["projects"]["used"], free["projects"]["limit"]) == (1, 3)
    # Bob's project is in Alice's workspace: it counts on her plan, her bar grows.
    assert (after_bob["projects"]["used"], after_bob["projects"]["limit"]) == (2, 3)
    assert after_bob["projects"]["width"] > free["projects"]["width"] > 0
    # Checkout completed on the fake, the webhook processed: the pro plan's limits.
    assert result["proPlan"].startswith("Pro plan")
    assert (pro["projects"]["used"], pro["projects"]["limit"]) == (2, 50)
    assert pro["projects"]["width"] < after_bob["projects"]["width"]
    assert pro["ai_tokens"]["limit"] == 2_000_000
    assert len(fake_stripe.subscriptions) == 1
    problems = [p for p in result["problems"] if "Content Security Policy" in p or "pageerror" in p]
    assert not problems, problems
