"""Billing endpoints: plans, this period's usage, Stripe Checkout and Portal, invoices, and the
Stripe webhook receiver.

Without ``STRIPE_SECRET_KEY`` checkout, portal and the webhook answer 503 ``billing_disabled``
(plans, usage and invoices still answer: everyone is on the free plan). The webhook stores the
verified event in ``webhook_logs`` and queues ``billing.stripe_event`` in one transaction, then
answers; a redelivered event id changes nothing (one that failed is queued again).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import jobs
from billing import events, store
from billing.events import BillingRuntime
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, conflict

if TYPE_CHECKING:
    import stripe

GB = 1024**3
MAX_WEBHOOK_BYTES = 1024 * 1024
# The resources the usage bars show, in order (members are per workspace: not a bar).
BARS = ("ai_tokens", "projects", "storage_bytes", "executions")


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=64)
    interval: Literal["monthly", "yearly"] = "monthly"


class PortalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Redirect(BaseModel):
    id: str
    url: str


def _runtime(ctx: Ctx) -> BillingRuntime:
    rt = ctx.services.billing
    if rt is None:
        raise ApiError(503, "billing_disabled",
                       "billing is not configured on this server (no STRIPE_SECRET_KEY)")
    return rt


def _stripe_failed(exc: stripe.StripeError) -> ApiError:
    return ApiError(502, "stripe_error", f"Stripe refused the request: {exc.user_message or exc}")


async def list_plans(ctx: Ctx) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        rows = await store.plans(conn)
    return {"items": [
        {"slug": r["slug"], "name": r["name"], "description": r["description"],
         "price_monthly": r["price_monthly"], "price_yearly": r["price_yearly"],
         "features": r["features"], "limits": r["limits"],
         "purchasable": bool(r["purchasable"]) and ctx.services.billing is not None}
        for r in rows]}


def _month() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 \
        else start.replace(month=start.month + 1)
    return start, end


def _limit(limits: dict[str, Any], resource: str) -> int | None:
    key = "storage_gb" if resource == "storage_bytes" else resource
    value = limits.get(key)
    if value is None or float(value) < 0:
        return None
    return math.floor(float(value) * GB) if resource == "storage_bytes" else int(value)


async def usage(ctx: Ctx) -> dict[str, Any]:
    """What the caller's owned workspaces use against the caller's plan (they pay for them)."""
    async with ctx.db.acquire() as conn:
        plan = await store.current_plan(conn, ctx.user_uuid)
        used = await store.usage(conn, ctx.user_uuid)
    limits = plan["limits"] or {}
    start, end = _month()
    return {
        "plan": {"slug": plan["slug"], "name": plan["name"], "status": plan["status"],
                 "current_period_end": plan["current_period_end"],
                 "grace_until": plan["grace_until"],
                 "cancel_at_period_end": plan["cancel_at_period_end"]},
        "period": {"start": start, "end": end},
        "billing_enabled": ctx.services.billing is not None,
        "resources": [{"resource": name, "used": int(used[name]),
                       "limit": _limit(limits, name)} for name in BARS],
        "members_per_workspace": _limit(limits, "members"),
    }


async def _customer_id(ctx: Ctx, rt: BillingRuntime) -> str:
    """The caller's Stripe customer, created once (the idempotency key makes a retried or
    concurrent create return the same customer)."""
    import stripe  # deferred: stripe is ~0.3 s of the server's start-up (bench/README.md)

    async with ctx.db.acquire() as conn:
        found = await store.customer(conn, ctx.user_uuid)
    if found is not None:
        return str(found["stripe_customer_id"])
    email = ctx.principal.email if ctx.principal else None
    try:
        created = await rt.client.v1.customers.create_async(
            params={"email": email or "", "metadata": {"user_id": ctx.user_id}},
            options={"idempotency_key": f"customer:{ctx.user_id}"},
        )
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    async with ctx.db.service() as conn:
        await store.insert_customer(conn, ctx.user_uuid, created.id, email)
        row = await store.customer(conn, ctx.user_uuid)
    assert row is not None
    return str(row["stripe_customer_id"])


async def checkout(ctx: Ctx) -> dict[str, Any]:
    import stripe  # deferred: stripe is ~0.3 s of the server's start-up (bench/README.md)

    body: CheckoutBody = ctx.body
    rt = _runtime(ctx)
    async with ctx.db.acquire() as conn:
        plan = await store.plan_by_slug(conn, body.plan)
        current = await store.current_plan(conn, ctx.user_uuid)
    if plan is None:
        raise ApiError(404, "not_found", f"no plan {body.plan!r}")
    price = plan[f"stripe_price_id_{body.interval}"]
    if price is None:
        raise ApiError(422, "plan_not_purchasable",
                       f"the {body.plan} plan has no Stripe price for {body.interval} billing")
    if current["status"] in ("active", "trialing", "past_due"):
        raise conflict("you already have a subscription: change it in the billing portal",
                       "already_subscribed")
    customer_id = await _customer_id(ctx, rt)
    try:
        session = await rt.client.v1.checkout.sessions.create_async(params={
            "mode": "subscription", "customer": customer_id,
            "line_items": [{"price": price, "quantity": 1}],
            "client_reference_id": ctx.user_id,
            "metadata": {"user_id": ctx.user_id, "plan": body.plan},
            "success_url": _return(ctx, rt, "success"), "cancel_url": _return(ctx, rt, "cancel"),
        }, options={"idempotency_key": f"checkout:{ctx.user_id}:{uuid.uuid4()}"})
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    return {"id": session.id, "url": session.url}


async def portal(ctx: Ctx) -> dict[str, Any]:
    import stripe  # deferred: stripe is ~0.3 s of the server's start-up (bench/README.md)

    rt = _runtime(ctx)
    async with ctx.db.acquire() as conn:
        found = await store.customer(conn, ctx.user_uuid)
    if found is None:
        raise conflict("you have no billing account yet: choose a plan first", "no_customer")
    try:
        session = await rt.client.v1.billing_portal.sessions.create_async(params={
            "customer": found["stripe_customer_id"], "return_url": _return(ctx, rt, "portal")})
    except stripe.StripeError as exc:
        raise _stripe_failed(exc) from None
    return {"id": session.id, "url": session.url}


def _return(ctx: Ctx, rt: BillingRuntime, outcome: str) -> str:
    base = rt.config.return_url or str(ctx.request.base_url)
    return f"{base}{'&' if '?' in base else '?'}billing={outcome}"


async def list_invoices(ctx: Ctx) -> dict[str, Any]:
    async with ctx.db.acquire() as conn:
        rows = await store.invoices(conn, ctx.user_uuid, 100)
    return {"items": rows}


async def stripe_webhook(ctx: Ctx) -> dict[str, Any]:
    import stripe  # deferred: stripe is ~0.3 s of the server's start-up (bench/README.md)

    raw = await ctx.request.body()
    if not raw:
        raise ApiError(400, "invalid_payload", "the body is empty")
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise ApiError(413, "payload_too_large", "webhook body too large")
    rt = _runtime(ctx)
    secret = rt.config.webhook_secret
    if not secret:
        raise ApiError(503, "billing_disabled", "no STRIPE_WEBHOOK_SECRET is configured")
    signature = ctx.request.headers.get("stripe-signature")
    try:
        # Checks the v1 HMAC of "t.body" with the raw bytes and the timestamp tolerance.
        stripe.WebhookSignature.verify_header(
            raw.decode("utf-8"), signature or "", secret, rt.config.webhook_tolerance_s)
        _refuse_future(signature or "", rt.config.webhook_tolerance_s)
        event = json.loads(raw)
    except stripe.SignatureVerificationError as exc:
        raise ApiError(400, "invalid_signature", str(exc.user_message or exc)) from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_payload", "the body is not a JSON event") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) \
            or not isinstance(event.get("type"), str):
        raise ApiError(400, "invalid_payload", "an event needs an id and a type")
    async with ctx.db.service() as conn:
        log_id = await store.insert_webhook(conn, event["type"], event, signature or "",
                                            event["id"])
        if log_id is None:
            seen = await store.webhook_by_event(conn, event["id"])
            if seen is None or seen["status"] != "failed":
                return {"status": "duplicate"}
            log_id = seen["id"]
        await jobs.enqueue(conn, events.process_event, events.StripeEventJob(log_id=log_id),
                           dedupe_key=f"stripe:{event['id']}")
    return {"status": "queued"}


def _refuse_future(signature: str, tolerance_s: int) -> None:
    """Stripe's library checks only that the signed timestamp is not too old; one from the
    future (a clock far off, or a signature made ahead to be replayed later) is refused too."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if stamps and stamps[0].isdigit() and int(stamps[0]) > time.time() + tolerance_s:
        raise ApiError(400, "invalid_signature", "the signature's timestamp is in the future")


ENDPOINTS = [
    Endpoint("GET", "/plans", list_plans, "The plans and their limits", "billing", auth=False),
    Endpoint("GET", "/billing/usage", usage,
             "This period's use of your plan (your owned workspaces) per resource", "billing"),
    Endpoint("POST", "/billing/checkout", checkout,
             "A Stripe Checkout Session for a plan and interval: redirect to its url",
             "billing", body=CheckoutBody, response=Redirect, errors=(404, 409, 422, 502, 503)),
    Endpoint("POST", "/billing/portal", portal,
             "A Stripe Customer Portal session: manage or cancel the subscription", "billing",
             body=PortalBody, body_required=False, response=Redirect,
             errors=(409, 502, 503)),
    Endpoint("GET", "/billing/invoices", list_invoices,
             "Your invoices, newest first, with the hosted PDF", "billing"),
    Endpoint("POST", "/webhooks/stripe", stripe_webhook,
             "Stripe's webhook (signed): stored, then processed by a job", "billing",
             auth=False, errors=(400, 413, 503), raw_body="application/json"),
]
