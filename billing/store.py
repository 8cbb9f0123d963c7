"""SQL of billing: plans, customers, subscriptions, invoices, Stripe webhook rows.

Service connections only (the endpoints authorize first; webhooks and jobs have no user).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

SELECT_PLANS = """
select id, name, slug, description, price_monthly, price_yearly, features, limits, sort_order,
       stripe_price_id_monthly is not null or stripe_price_id_yearly is not null as purchasable
from public.subscription_plans where is_active order by sort_order, price_monthly
"""
SELECT_PLAN_BY_SLUG = """
select id, slug, stripe_price_id_monthly, stripe_price_id_yearly
from public.subscription_plans where slug = $1 and is_active
"""
SELECT_PLAN_BY_PRICE = """
select id, slug,
       case when stripe_price_id_yearly = $1 then 'yearly' else 'monthly' end as interval
from public.subscription_plans
where stripe_price_id_monthly = $1 or stripe_price_id_yearly = $1
"""
SELECT_CURRENT_PLAN = "select * from public.billing_plan_of($1)"
SELECT_USAGE = "select * from public.billing_usage_of($1)"
# Concurrent first checkouts of a user insert the same Stripe customer (one idempotency key):
# both unique keys (user, Stripe id) collide, so the insert ignores any conflict.
SELECT_CUSTOMER = "select id, stripe_customer_id, email from public.customers where user_id = $1"
SELECT_CUSTOMER_BY_STRIPE = "select id, user_id from public.customers where stripe_customer_id = $1"
INSERT_CUSTOMER = """
insert into public.customers (user_id, stripe_customer_id, email)
values ($1, $2, $3)
on conflict do nothing
"""
UPDATE_CUSTOMER = """
update public.customers set email = $2, billing_address = $3, updated_at = now()
where stripe_customer_id = $1
"""
# The subscription as Stripe holds it now; past_due_since set on the first past_due and
# cleared when it leaves that state.
UPSERT_SUBSCRIPTION = """
insert into public.subscriptions
  (customer_id, plan_id, stripe_subscription_id, status, billing_interval, current_period_start,
   current_period_end, cancel_at_period_end, canceled_at, trial_start, trial_end,
   stripe_price_id, past_due_since)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
        case when $4 = 'past_due' then now() end)
on conflict (stripe_subscription_id) do update set
  customer_id = excluded.customer_id, plan_id = excluded.plan_id, status = excluded.status,
  billing_interval = excluded.billing_interval,
  current_period_start = excluded.current_period_start,
  current_period_end = excluded.current_period_end,
  cancel_at_period_end = excluded.cancel_at_period_end, canceled_at = excluded.canceled_at,
  trial_start = excluded.trial_start, trial_end = excluded.trial_end,
  stripe_price_id = excluded.stripe_price_id,
  past_due_since = case when excluded.status = 'past_due'
                        then coalesce(public.subscriptions.past_due_since, now()) end,
  updated_at = now()
returning id
"""
UPSERT_INVOICE = """
insert into public.invoices
  (customer_id, stripe_invoice_id, amount_due, amount_paid, currency, status, invoice_pdf_url,
   period_start, period_end, paid_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
on conflict (stripe_invoice_id) do update set
  amount_due = excluded.amount_due, amount_paid = excluded.amount_paid,
  currency = excluded.currency, status = excluded.status,
  invoice_pdf_url = excluded.invoice_pdf_url, period_start = excluded.period_start,
  period_end = excluded.period_end, paid_at = excluded.paid_at
"""
SELECT_INVOICES = """
select i.id, i.stripe_invoice_id, i.amount_due, i.amount_paid, i.currency, i.status,
       i.invoice_pdf_url, i.period_start, i.period_end, i.paid_at, i.created_at
from public.invoices i join public.customers c on c.id = i.customer_id
where c.user_id = $1
order by i.created_at desc, i.id desc
limit $2
"""
INSERT_WEBHOOK = """
insert into public.webhook_logs (provider, event_type, payload, signature, status, event_id)
values ('stripe', $1, $2, $3, 'received', $4)
on conflict (provider, event_id) where event_id is not null do nothing
returning id
"""
SELECT_WEBHOOK_BY_EVENT = """
select id, status from public.webhook_logs where provider = 'stripe' and event_id = $1
"""
SELECT_WEBHOOK = "select id, event_type, payload, status from public.webhook_logs where id = $1"
MARK_WEBHOOK = """
update public.webhook_logs set status = $2, response = $3, error = $4,
  processed_at = case when $2 in ('processed', 'failed') then now() end
where id = $1
"""
# Serialises the processing of one Stripe object's events (a subscription's, an invoice's).
LOCK_OBJECT = "select pg_advisory_xact_lock(hashtextextended('stripe:' || $1, 0))"


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


async def plans(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(SELECT_PLANS)]


async def plan_by_slug(conn: asyncpg.Connection, slug: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_PLAN_BY_SLUG, slug))


async def plan_by_price(conn: asyncpg.Connection, price_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_PLAN_BY_PRICE, price_id))


async def current_plan(conn: asyncpg.Connection, user_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(SELECT_CURRENT_PLAN, user_id)
    assert row is not None
    return dict(row)


async def usage(conn: asyncpg.Connection, user_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(SELECT_USAGE, user_id)
    assert row is not None
    return dict(row)


async def customer(conn: asyncpg.Connection, user_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_CUSTOMER, user_id))


async def customer_by_stripe(conn: asyncpg.Connection, stripe_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_CUSTOMER_BY_STRIPE, stripe_id))


async def insert_customer(
    conn: asyncpg.Connection, user_id: uuid.UUID, stripe_id: str, email: str | None
) -> None:
    await conn.execute(INSERT_CUSTOMER, user_id, stripe_id, email)


async def update_customer(
    conn: asyncpg.Connection, stripe_id: str, email: str | None, address: Any
) -> None:
    await conn.execute(UPDATE_CUSTOMER, stripe_id, email, address)


async def upsert_subscription(conn: asyncpg.Connection, **f: Any) -> uuid.UUID:
    sub_id: uuid.UUID = await conn.fetchval(
        UPSERT_SUBSCRIPTION, f["customer_id"], f["plan_id"], f["stripe_id"], f["status"],
        f["interval"], f["period_start"], f["period_end"], f["cancel_at_period_end"],
        f["canceled_at"], f["trial_start"], f["trial_end"], f["price_id"],
    )
    return sub_id


async def upsert_invoice(conn: asyncpg.Connection, **f: Any) -> None:
    await conn.execute(
        UPSERT_INVOICE, f["customer_id"], f["stripe_id"], f["amount_due"], f["amount_paid"],
        f["currency"], f["status"], f["pdf_url"], f["period_start"], f["period_end"],
        f["paid_at"],
    )


async def invoices(conn: asyncpg.Connection, user_id: uuid.UUID, limit: int
                   ) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(SELECT_INVOICES, user_id, limit)]


async def insert_webhook(
    conn: asyncpg.Connection, event_type: str, payload: dict[str, Any], signature: str,
    event_id: str,
) -> uuid.UUID | None:
    """The new row's id; None when this event id was stored before (a redelivery)."""
    log_id: uuid.UUID | None = await conn.fetchval(
        INSERT_WEBHOOK, event_type, payload, signature, event_id)
    return log_id


async def webhook_by_event(conn: asyncpg.Connection, event_id: str) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_WEBHOOK_BY_EVENT, event_id))


async def webhook(conn: asyncpg.Connection, log_id: uuid.UUID) -> dict[str, Any] | None:
    row = _row(await conn.fetchrow(SELECT_WEBHOOK, log_id))
    if row is not None and isinstance(row["payload"], str):
        row["payload"] = json.loads(row["payload"])
    return row


async def mark_webhook(
    conn: asyncpg.Connection, log_id: uuid.UUID, status: str,
    response: dict[str, Any] | None = None, error: str | None = None,
) -> None:
    await conn.execute(MARK_WEBHOOK, log_id, status, response, error)


async def lock_object(conn: asyncpg.Connection, stripe_id: str) -> None:
    await conn.execute(LOCK_OBJECT, stripe_id)


def ts(value: Any) -> datetime | None:
    """A Stripe unix timestamp as an aware datetime (None stays None)."""
    return None if value is None else datetime.fromtimestamp(int(value), UTC)
