"""Stripe webhooks: verified on the raw body, stored first, processed by a job, idempotent by
event id, resolved from the object's current state; and what subscription states do to plans.
"""

from __future__ import annotations

import json
import time

from persistence.db import Database
from tests.api.client import Api
from tests.billing.conftest import (
    eventually,
    owner_with_workspace,
    subscribe,
    subscription_status,
    webhooks_settled,
)
from tests.fakes.stripe_server import FakeStripe

COUNT_LOGS = "select count(*) from public.webhook_logs where provider = 'stripe'"


async def count_logs(db: Database) -> int:
    async with db.acquire() as conn:
        found: int = await conn.fetchval(COUNT_LOGS)
    return found


async def test_forged_stale_future_and_altered_webhooks_are_refused_and_not_stored(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    await subscribe(api, fake_stripe, db, user)
    before = await count_logs(db)
    event = fake_stripe.event("customer.subscription.updated",
                              next(iter(fake_stripe.subscriptions.values())))
    forged = await fake_stripe.send(event, secret="whsec_someone_else")
    stale = await fake_stripe.send(event, timestamp=int(time.time()) - 3600)
    future = await fake_stripe.send(event, timestamp=int(time.time()) + 3600)
    signed = json.dumps(event).encode()
    altered = await fake_stripe.send(event, tamper=True)
    for status, body in (forged, stale, future):
        assert (status, body["error"]["code"]) == (400, "invalid_signature"), body
    assert altered[0] == 400
    unsigned = await api.call("POST", "/webhooks/stripe", data=signed)
    assert (unsigned.status, unsigned.error_code) == (400, "invalid_signature")
    garbage = await fake_stripe.send(event, body=b"not json")
    assert (garbage[0], garbage[1]["error"]["code"]) == (400, "invalid_payload")
    no_id = await fake_stripe.send({"type": "invoice.paid"})
    assert (no_id[0], no_id[1]["error"]["code"]) == (400, "invalid_payload")
    empty = await api.call("POST", "/webhooks/stripe", data=b"")
    assert (empty.status, empty.error_code) == (400, "invalid_payload")
    assert await count_logs(db) == before


async def test_a_replayed_event_changes_nothing(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    await subscribe(api, fake_stripe, db, user)
    before = await count_logs(db)
    for event in fake_stripe.events:
        status, body = await fake_stripe.send(event)
        assert (status, body) == (200, {"status": "duplicate"})
    assert await count_logs(db) == before
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.subscriptions") == 1
        assert await conn.fetchval("select count(*) from public.invoices") == 1
        assert await conn.fetchval(
            "select count(*) from public.background_jobs where job_name = 'billing.stripe_event'"
        ) == before


async def test_out_of_order_events_leave_the_current_state(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    sub_id = await subscribe(api, fake_stripe, db, user)
    created = next(e for e in fake_stripe.events if e["type"] == "customer.subscription.created")
    await fake_stripe.cancel(sub_id)
    await eventually(lambda: _status_is(db, user.id, "canceled"))
    # Stripe delivers an older event late (a retry, under a new delivery): its snapshot says
    # active, but the job reads the subscription as it is now.
    late = fake_stripe.event("customer.subscription.updated", created["data"]["object"])
    assert (await fake_stripe.send(late))[0] == 200
    await eventually(lambda: webhooks_settled(db))
    assert await subscription_status(db, user.id) == "canceled"
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    assert usage["plan"]["slug"] == "free"


async def _status_is(db: Database, user_id: str, status: str) -> bool:
    return await subscription_status(db, user_id) == status


async def test_payment_failure_past_due_grace_then_free_and_read_only_projects(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, workspace = await owner_with_workspace(api)
    sub_id = await subscribe(api, fake_stripe, db, user)
    async with db.acquire() as conn:
        free_projects = await conn.fetchval(
            "select (limits->>'projects')::int from public.subscription_plans where slug='free'")
    projects = [await api.ok("POST", f"/workspaces/{workspace}/projects", {"name": f"p{i}"},
                             token=user.token) for i in range(free_projects + 2)]

    invoice = await fake_stripe.fail_payment(sub_id)
    await eventually(lambda: _status_is(db, user.id, "past_due"))
    await eventually(lambda: webhooks_settled(db))
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    # The grace period: the plan is kept, and the page can say until when.
    assert usage["plan"]["slug"] == "pro" and usage["plan"]["status"] == "past_due"
    assert usage["plan"]["grace_until"] is not None
    invoices = await api.ok("GET", "/billing/invoices", token=user.token)
    assert {(i["stripe_invoice_id"], i["status"]) for i in invoices["items"]} >= {
        (invoice["id"], "open")}

    # Seven days later (moved back in time here), still unpaid: the free plan applies.
    async with db.acquire() as conn:
        await conn.execute(
            "update public.subscriptions set past_due_since = now() - interval '8 days'")
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    assert usage["plan"]["slug"] == "free"

    # Nothing is deleted: the oldest projects within the free limit stay writable, the newer
    # ones are read-only with a clear error, and all can be read and deleted.
    oldest, newest = projects[0], projects[-1]
    await api.ok("PATCH", f"/projects/{oldest['id']}", {"description": "still mine"},
                 token=user.token)
    refused = await api.call("PATCH", f"/projects/{newest['id']}", {"description": "x"},
                             token=user.token)
    assert (refused.status, refused.error_code) == (402, "project_read_only"), refused.body
    assert (await api.ok("GET", f"/projects/{newest['id']}", token=user.token))["id"] == \
        newest["id"]
    more = await api.call("POST", f"/workspaces/{workspace}/projects", {"name": "no"},
                          token=user.token)
    assert (more.status, more.body["error"]["plan"]) == (402, "free")
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.projects") == free_projects + 2

    # Paid after all: the plan is back and the projects are writable again.
    await fake_stripe.recover_payment(sub_id, invoice["id"])
    await eventually(lambda: _status_is(db, user.id, "active"))
    await api.ok("PATCH", f"/projects/{newest['id']}", {"description": "back"},
                 token=user.token)
    async with db.acquire() as conn:
        assert await conn.fetchval("select past_due_since from public.subscriptions") is None


async def test_canceled_keeps_the_plan_until_the_period_ends(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    sub_id = await subscribe(api, fake_stripe, db, user)
    await fake_stripe.cancel(sub_id, period_over=False)
    await eventually(lambda: _status_is(db, user.id, "canceled"))
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    assert (usage["plan"]["slug"], usage["plan"]["status"]) == ("pro", "canceled")
    async with db.acquire() as conn:
        await conn.execute(
            "update public.subscriptions set current_period_end = now() - interval '1 second'")
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    assert usage["plan"]["slug"] == "free"


async def test_a_failed_processing_is_kept_failed_then_retried(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    sub_id = await subscribe(api, fake_stripe, db, user)
    # Stripe's API fails more often than the library's own retries cover.
    fake_stripe.fail_next = 3
    fake_stripe.subscriptions[sub_id]["cancel_at_period_end"] = True
    event = await fake_stripe.deliver("customer.subscription.updated",
                                      fake_stripe.subscriptions[sub_id])

    async def failed() -> bool:
        async with db.acquire() as conn:
            row = await conn.fetchrow(
                "select status, error from public.webhook_logs where event_id = $1",
                event["id"])
        return (row is not None and row["status"] == "failed" and "api_error" in \
            (row["error"] or "").lower().replace(" ", "_")) or (
                row is not None and row["status"] == "failed" and bool(row["error"]))

    await eventually(failed)
    # The queue's retry processes it: nothing was lost.
    await eventually(lambda: webhooks_settled(db), timeout_s=30)
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "select cancel_at_period_end from public.subscriptions") is True
