"""Stripe events, processed by the ``billing.stripe_event`` job from their ``webhook_logs`` row.

Each event names an object; the job fetches that object's current state from Stripe and
writes it, holding a per-object lock across fetch and write. So replays change nothing, and
events arriving out of order (Stripe retries for days and never promises order) all leave
the row as Stripe holds it now. A failed attempt leaves the row ``failed`` with the error
and raises, so the queue retries it; a redelivery of a failed event queues it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import BaseModel

import jobs
from billing import store
from billing.config import BillingConfig
from billing.stripe_api import make_client
from persistence.db import Database

if TYPE_CHECKING:
    import stripe

# Stripe statuses in the seed's vocabulary (None: not a subscription the plan depends on).
STATUS = {
    "active": "active", "trialing": "trialing", "past_due": "past_due", "unpaid": "unpaid",
    "canceled": "canceled", "incomplete_expired": "canceled", "paused": "unpaid",
    "incomplete": None,
}
INVOICE_STATUS = {"draft", "open", "paid", "void", "uncollectible"}
HANDLED = {
    "checkout.session.completed", "customer.subscription.created",
    "customer.subscription.updated", "customer.subscription.deleted", "invoice.created",
    "invoice.finalized", "invoice.paid", "invoice.payment_failed", "invoice.voided",
    "customer.updated",
}


@dataclass
class BillingRuntime:
    """What billing jobs need from the process: the config and one Stripe client."""

    config: BillingConfig
    client: stripe.StripeClient
    http: stripe.AIOHTTPClient

    @classmethod
    def from_config(cls, config: BillingConfig) -> BillingRuntime | None:
        """None when billing is disabled (no secret key)."""
        if not config.enabled:
            return None
        import stripe  # deferred: ~0.5 s of start-up without billing (bench/README.md)

        http = stripe.AIOHTTPClient()
        return cls(config, make_client(config, http), http)

    async def close(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]


class StripeEventJob(BaseModel):
    log_id: uuid.UUID


@jobs.job("billing.stripe_event", input=StripeEventJob, job_type="sync", max_attempts=10,
          retry_base=2, retry_max=900, timeout=60)
async def process_event(ctx: jobs.JobContext, payload: StripeEventJob) -> dict[str, Any]:
    rt = ctx.resource(BillingRuntime)
    async with ctx.db.service() as conn:
        row = await store.webhook(conn, payload.log_id)
        if row is None:
            raise jobs.PermanentJobError(f"no webhook_logs row {payload.log_id}")
        if row["status"] == "processed":
            return {"status": "already processed"}
        await store.mark_webhook(conn, payload.log_id, "processing")
    try:
        response = await apply_event(rt.client, ctx.db, row["event_type"], row["payload"])
    except Exception as exc:
        async with ctx.db.service() as conn:
            await store.mark_webhook(conn, payload.log_id, "failed", None,
                                     f"{type(exc).__name__}: {exc}"[:2000])
        raise
    async with ctx.db.service() as conn:
        await store.mark_webhook(conn, payload.log_id, "processed", response)
    return response


async def apply_event(
    client: stripe.StripeClient, db: Database, event_type: str, event: dict[str, Any]
) -> dict[str, Any]:
    """Bring our rows to the current state of the object the event is about."""
    obj = event.get("data", {}).get("object", {})
    if event_type not in HANDLED:
        return {"status": "ignored", "reason": "event type not handled"}
    if event_type == "checkout.session.completed":
        if obj.get("mode") != "subscription" or not obj.get("subscription"):
            return {"status": "ignored", "reason": "not a subscription checkout"}
        return await sync_subscription(client, db, _id(obj["subscription"]))
    if event_type.startswith("customer.subscription."):
        return await sync_subscription(client, db, obj["id"])
    if event_type.startswith("invoice."):
        result = await sync_invoice(client, db, obj["id"])
        subscription = _invoice_subscription(obj)
        if subscription:
            result["subscription"] = await sync_subscription(client, db, subscription)
        return result
    return await sync_customer(client, db, obj["id"])


async def sync_subscription(
    client: stripe.StripeClient, db: Database, subscription_id: str
) -> dict[str, Any]:
    async with db.service() as conn:
        await store.lock_object(conn, subscription_id)
        sub = (await client.v1.subscriptions.retrieve_async(subscription_id)).to_dict()
        return await _write_subscription(conn, sub)


async def _write_subscription(conn: asyncpg.Connection, sub: dict[str, Any]) -> dict[str, Any]:
    status = STATUS.get(sub["status"])
    if status is None:
        return {"status": "ignored", "reason": f"subscription is {sub['status']}"}
    customer = await store.customer_by_stripe(conn, _id(sub["customer"]))
    if customer is None:
        raise LookupError(f"subscription {sub['id']} of unknown customer {sub['customer']}")
    item = sub["items"]["data"][0]
    price_id = _id(item["price"])
    plan = await store.plan_by_price(conn, price_id)
    if plan is None:
        raise LookupError(f"subscription {sub['id']} is on price {price_id}, no plan has it")
    await store.upsert_subscription(
        conn, customer_id=customer["id"], plan_id=plan["id"], stripe_id=sub["id"],
        status=status, interval=plan["interval"],
        period_start=store.ts(item.get("current_period_start", sub.get("current_period_start"))),
        period_end=store.ts(item.get("current_period_end", sub.get("current_period_end"))),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        canceled_at=store.ts(sub.get("canceled_at")), trial_start=store.ts(sub.get("trial_start")),
        trial_end=store.ts(sub.get("trial_end")), price_id=price_id,
    )
    return {"status": "synced", "subscription": sub["id"], "state": status, "plan": plan["slug"]}


async def sync_invoice(client: stripe.StripeClient, db: Database, invoice_id: str
                       ) -> dict[str, Any]:
    async with db.service() as conn:
        await store.lock_object(conn, invoice_id)
        inv = (await client.v1.invoices.retrieve_async(invoice_id)).to_dict()
        customer = await store.customer_by_stripe(conn, _id(inv["customer"]))
        if customer is None:
            raise LookupError(f"invoice {invoice_id} of unknown customer {inv['customer']}")
        status = inv["status"] if inv["status"] in INVOICE_STATUS else "draft"
        paid_at = (inv.get("status_transitions") or {}).get("paid_at")
        await store.upsert_invoice(
            conn, customer_id=customer["id"], stripe_id=inv["id"],
            amount_due=int(inv.get("amount_due") or 0), amount_paid=inv.get("amount_paid"),
            currency=inv.get("currency") or "usd", status=status,
            pdf_url=inv.get("invoice_pdf") or inv.get("hosted_invoice_url"),
            period_start=store.ts(inv.get("period_start")),
            period_end=store.ts(inv.get("period_end")), paid_at=store.ts(paid_at),
        )
    return {"status": "synced", "invoice": invoice_id, "state": status}


async def sync_customer(client: stripe.StripeClient, db: Database, customer_id: str
                        ) -> dict[str, Any]:
    async with db.service() as conn:
        await store.lock_object(conn, customer_id)
        found = (await client.v1.customers.retrieve_async(customer_id)).to_dict()
        await store.update_customer(conn, customer_id, found.get("email"), found.get("address"))
    return {"status": "synced", "customer": customer_id}


def _id(value: Any) -> str:
    """An expandable field: the id string, or the expanded object's id."""
    return str(value["id"] if isinstance(value, dict) else value)


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    """The subscription of an invoice (top level before API 2025-03-31, under parent after)."""
    direct = invoice.get("subscription")
    if direct:
        return _id(direct)
    details = ((invoice.get("parent") or {}).get("subscription_details") or {})
    found = details.get("subscription")
    return _id(found) if found else None


JOBS = [process_event]
