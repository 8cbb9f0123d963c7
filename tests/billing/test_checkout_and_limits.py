"""Plans, limits and the Stripe checkout path, against the local Stripe-wire server.

checkout -> signed webhooks -> the job syncs the subscription -> the plan's limits apply;
limits hold exactly under 50 concurrent requests; billing off answers 503 and everyone is free.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import aiohttp

from execution.config import ExecutionConfig
from persistence.db import Database
from server.settings import Settings
from tests.api.client import Api
from tests.billing.conftest import owner_with_workspace, subscribe
from tests.fakes.judge0_server import FakeJudge0
from tests.fakes.stripe_server import FakeStripe
from tests.support.servers import LiveServer


async def free_limit(db: Database, name: str) -> int:
    async with db.acquire() as conn:
        value: int = await conn.fetchval(
            "select (limits->>$1)::int from public.subscription_plans where slug = 'free'", name)
    return value


async def test_without_a_key_billing_answers_503_and_everyone_is_free(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        user = await api.sign_up()
        for path, body in (("/billing/checkout", {"plan": "pro"}), ("/billing/portal", {})):
            reply = await api.call("POST", path, body, token=user.token)
            assert (reply.status, reply.error_code) == (503, "billing_disabled"), reply.body
        hook = await api.call("POST", "/webhooks/stripe", data=b"{}",
                              headers={"Stripe-Signature": "t=1,v1=00"})
        assert (hook.status, hook.error_code) == (503, "billing_disabled")
        usage = await api.ok("GET", "/billing/usage", token=user.token)
        assert usage["plan"]["slug"] == "free" and usage["billing_enabled"] is False
        plans = await api.ok("GET", "/plans", token=user.token)
        assert [p["slug"] for p in plans["items"]] == ["free", "pro", "team"]
        assert not any(p["purchasable"] for p in plans["items"])


async def test_checkout_webhooks_activate_the_plan_and_raise_the_limits(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, workspace = await owner_with_workspace(api)
    limit = await free_limit(db, "projects")
    for i in range(limit):
        await api.ok("POST", f"/workspaces/{workspace}/projects", {"name": f"p{i}"},
                     token=user.token)
    refused = await api.call("POST", f"/workspaces/{workspace}/projects", {"name": "over"},
                             token=user.token)
    assert refused.status == 402, refused.body
    assert refused.body["error"] | {"message": ""} == {
        "code": "plan_limit_reached", "message": "", "resource": "projects", "limit": limit,
        "used": limit, "plan": "free"}

    sub_id = await subscribe(api, fake_stripe, db, user)
    usage = await api.ok("GET", "/billing/usage", token=user.token)
    assert (usage["plan"]["slug"], usage["plan"]["status"]) == ("pro", "active")
    bars = {r["resource"]: r for r in usage["resources"]}
    assert bars["projects"] == {"resource": "projects", "used": limit, "limit": 50}
    await api.ok("POST", f"/workspaces/{workspace}/projects", {"name": "now allowed"},
                 token=user.token)

    # One Stripe customer per user (created with an idempotency key), the checkout request
    # form-encoded as Stripe's API takes it.
    assert len(fake_stripe.customers) == 1
    created = [p for m, path, p in fake_stripe.requests if path == "/v1/checkout/sessions"]
    assert created[0]["line_items"] == [{"price": "price_pro_month", "quantity": "1"}]
    again = await api.call("POST", "/billing/checkout", {"plan": "team"}, token=user.token)
    assert (again.status, again.error_code) == (409, "already_subscribed")
    portal = await api.ok("POST", "/billing/portal", {}, token=user.token)
    assert portal["url"].startswith(fake_stripe.url + "/portal/")

    # Every event is in webhook_logs, processed, with its Stripe event id.
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "select event_id, event_type, status, error from public.webhook_logs "
            "where provider = 'stripe' order by created_at")
    assert [r["event_id"] for r in rows] == [e["id"] for e in fake_stripe.events]
    assert {r["status"] for r in rows} == {"processed"}
    assert [r["event_type"] for r in rows][:2] == [
        "checkout.session.completed", "customer.subscription.created"]

    invoices = await api.ok("GET", "/billing/invoices", token=user.token)
    assert [(i["status"], i["amount_due"], i["amount_paid"]) for i in invoices["items"]] == [
        ("paid", 1500, 1500)]
    assert invoices["items"][0]["invoice_pdf_url"].endswith(".pdf")
    assert sub_id in fake_stripe.subscriptions


async def test_concurrent_checkouts_of_a_new_user_make_one_customer(
    api: Api, fake_stripe: FakeStripe, db: Database,
) -> None:
    user, _ = await owner_with_workspace(api)
    sessions = await asyncio.gather(*(
        api.ok("POST", "/billing/checkout", {"plan": "pro", "interval": "yearly"},
               token=user.token) for _ in range(5)))
    assert len({s["id"] for s in sessions}) == 5
    # The customer is created with one idempotency key per user: Stripe answers the same.
    assert len(fake_stripe.customers) == 1
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.customers") == 1
    prices = {p["line_items"][0]["price"] for m, path, p in fake_stripe.requests
              if path == "/v1/checkout/sessions"}
    assert prices == {"price_pro_year"}


async def test_stripe_errors_become_502(api: Api, fake_stripe: FakeStripe) -> None:
    user, _ = await owner_with_workspace(api)
    fake_stripe.fail_next = 10  # more than the library's retries
    reply = await api.call("POST", "/billing/checkout", {"plan": "pro"}, token=user.token)
    assert (reply.status, reply.error_code) == (502, "stripe_error"), reply.body


async def test_checkout_refuses_bad_plans_and_intervals(api: Api, db: Database) -> None:
    user, _ = await owner_with_workspace(api)
    for body, status, code in (
        ({"plan": "gold"}, 404, "not_found"),
        ({"plan": "free"}, 422, "plan_not_purchasable"),
        ({"plan": "pro", "interval": "weekly"}, 422, "validation_error"),
        ({"plan": "pro", "extra": 1}, 422, "validation_error"),
    ):
        reply = await api.call("POST", "/billing/checkout", body, token=user.token)
        assert (reply.status, reply.error_code) == (status, code), (body, reply.body)
    portal = await api.call("POST", "/billing/portal", {}, token=user.token)
    assert (portal.status, portal.error_code) == (409, "no_customer")
    anonymous = await api.call("GET", "/billing/usage")
    assert anonymous.status == 401


async def test_fifty_concurrent_project_creations_at_the_edge_take_exactly_the_limit(
    api: Api, db: Database,
) -> None:
    user, workspace = await owner_with_workspace(api)
    limit = await free_limit(db, "projects")
    replies = await asyncio.gather(*(
        api.call("POST", f"/workspaces/{workspace}/projects", {"name": f"race {i}"},
                 token=user.token) for i in range(50)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [201] * limit + [402] * (50 - limit), statuses
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "select count(*) from public.projects where workspace_id = $1::uuid",
            workspace) == limit


async def test_members_and_runs_are_limited_by_the_owners_plan(
    api: Api, db: Database,
) -> None:
    owner, workspace = await owner_with_workspace(api)
    limit = await free_limit(db, "members")
    others = [await api.sign_up() for _ in range(limit)]
    replies = await asyncio.gather(*(
        api.call("POST", f"/workspaces/{workspace}/members",
                 {"email": other.email, "role": "member"}, token=owner.token)
        for other in others))
    # The owner is the first member: limit - 1 more fit.
    assert sorted(r.status for r in replies) == [201] * (limit - 1) + [402], \
        [r.body for r in replies]
    refused = next(r for r in replies if r.status == 402)
    assert refused.body["error"]["resource"] == "members"


async def test_storage_is_counted_incrementally_and_limited_under_concurrency(
    api: Api, db: Database,
) -> None:
    owner, workspace = await owner_with_workspace(api)
    project = await api.ok("POST", f"/workspaces/{workspace}/projects", {"name": "files"},
                           token=owner.token)
    async with db.acquire() as conn:
        # A tiny plan: 1,073 bytes (0.000001 GB) of storage.
        await conn.execute(
            "update public.subscription_plans set limits = limits || "
            "'{\"storage_gb\": 0.000001}'::jsonb where slug = 'free'")
    replies = await asyncio.gather(*(
        api.call("POST", f"/projects/{project['id']}/files",
                 {"path": f"/f{i}.txt", "type": "file", "content": "x" * 100},
                 token=owner.token) for i in range(20)))
    assert sorted(r.status for r in replies) == [201] * 10 + [402] * 10
    refused = next(r for r in replies if r.status == 402)
    assert refused.body["error"]["resource"] == "storage_bytes"
    assert refused.body["error"]["limit"] == 1073

    async def counter() -> tuple[int, int]:
        async with db.acquire() as conn:
            row = await conn.fetchrow(
                "select (select bytes from public.workspace_storage where workspace_id = "
                "$1::uuid) as counted, (select coalesce(sum(size_bytes), 0) from public.files "
                "f join public.projects p on p.id = f.project_id where p.workspace_id = "
                "$1::uuid) as scanned", workspace)
        return int(row["counted"]), int(row["scanned"])

    assert await counter() == (1000, 1000)
    created = [r.body for r in replies if r.status == 201]
    await api.ok("DELETE", f"/files/{created[0]['id']}", token=owner.token)
    # Deleting the project cascades to its files: the counter follows without a scan.
    await api.ok("DELETE", f"/projects/{project['id']}", token=owner.token)
    assert await counter() == (0, 0)


async def test_runs_per_month_are_limited_by_the_owners_plan(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings, db: Database,
) -> None:
    judge0 = FakeJudge0()
    await judge0.start()
    try:
        config = ExecutionConfig(backend="judge0", judge0_url=judge0.url,
                                 judge0_poll_deadline_s=10)
        server = await live_server(dataclasses.replace(settings, execution=config))
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url)
            owner, workspace = await owner_with_workspace(api)
            project = await api.ok("POST", f"/workspaces/{workspace}/projects",
                                   {"name": "runs"}, token=owner.token)
            main = await api.ok("POST", f"/projects/{project['id']}/files",
                                {"path": "/main.py", "type": "file", "content": "print(1)\n"},
                                token=owner.token)
            async with db.acquire() as conn:
                await conn.execute(
                    "update public.subscription_plans set limits = limits || "
                    "'{\"executions\": 2}'::jsonb where slug = 'free'")
            statuses = []
            for _ in range(3):
                reply = await api.call("POST", f"/projects/{project['id']}/executions",
                                       {"file_id": main["id"]}, token=owner.token)
                statuses.append(reply.status)
            assert statuses == [202, 202, 402], reply.body
            assert reply.body["error"] | {"message": ""} == {
                "code": "plan_limit_reached", "message": "", "resource": "executions",
                "limit": 2, "used": 2, "plan": "free"}
    finally:
        await judge0.stop()
