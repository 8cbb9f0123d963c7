"""Metered AI use: one Stripe meter event per payer and usage window, whatever the reruns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from billing import meter
from billing.events import BillingRuntime
from persistence.db import Database
from tests.api.client import Api
from tests.billing.conftest import billing_settings, owner_with_workspace, subscribe
from tests.fakes.stripe_server import FakeStripe
from tests.support.servers import LiveServer

RECORD = """
insert into public.usage_records (user_id, workspace_id, resource_type, amount, unit, recorded_at)
values ($1::uuid, $2::uuid, 'ai_tokens', $3, 'tokens', $4)
"""


def test_the_window_is_the_last_whole_hour() -> None:
    now = datetime(2026, 12, 7, 15, 20, 5, tzinfo=UTC)
    assert meter.last_window(now) == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


async def test_metered_tokens_are_reported_once_per_window(
    api: Api, fake_stripe: FakeStripe, db: Database, billing_server: LiveServer,
) -> None:
    team_owner, team_ws = await owner_with_workspace(api)
    await subscribe(api, fake_stripe, db, team_owner, plan="team")
    pro_owner, pro_ws = await owner_with_workspace(api)
    await subscribe(api, fake_stripe, db, pro_owner, plan="pro")
    start = meter.last_window(datetime.now(UTC))
    async with db.service() as conn:
        for owner, workspace in ((team_owner, team_ws), (pro_owner, pro_ws)):
            await conn.execute(RECORD, owner.id, workspace, 1200, start + timedelta(minutes=5))
            await conn.execute(RECORD, owner.id, workspace, 34, start + timedelta(minutes=59))
            # Outside the window: not in this report.
            await conn.execute(RECORD, owner.id, workspace, 999, start - timedelta(minutes=1))

    runtime = BillingRuntime.from_config(billing_settings(billing_server.settings,
                                                          fake_stripe).billing)
    assert runtime is not None
    try:
        first = await meter.report_window(db, runtime.client, "ai_tokens", start)
        # A rerun (a retried job, another worker) reports nothing new.
        second = await meter.report_window(db, runtime.client, "ai_tokens", start)
    finally:
        await runtime.close()
    assert (first["reported"], second["reported"]) == (1, 0)
    events = list(fake_stripe.meter_events.values())
    assert len(events) == 1
    customer = next(c for c in fake_stripe.customers.values()
                    if c["metadata"].get("user_id") == team_owner.id)
    assert events[0]["payload"] == {"stripe_customer_id": customer["id"], "value": "1234"}
    assert events[0]["identifier"] == \
        f"ai_tokens:{uuid.UUID(team_owner.id)}:{int(start.timestamp())}"
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "select count(*) from public.billing_meter_reports where reported_at is not null"
        ) == 1
