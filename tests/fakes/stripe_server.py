"""A local server speaking Stripe's wire format, for the billing tests and the browser test.

What the official ``stripe`` library sees:
- ``Authorization: Bearer <secret key>``; a wrong key answers 401 with an error object.
- Form-encoded bodies with Stripe's bracket nesting (``line_items[0][price]``,
  ``metadata[user_id]``), JSON answers with ``object`` fields and ids prefixed as Stripe's.
- ``Idempotency-Key``: a repeated key with the same parameters replays the first answer
  (``Idempotent-Replayed: true``); with other parameters it answers 400 ``idempotency_error``.
- Errors as ``{"error": {"type", "code", "message", "param"}}``: 404 ``resource_missing``,
  400 ``parameter_missing``; ``fail_next`` makes the next API call answer 500 ``api_error``.
- Webhooks: events (``evt_...``, ``data.object``) POSTed to ``webhook_url`` with a
  ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` header made with
  ``webhook_secret``, the documented scheme.

The hosted pages a browser visits: ``GET /checkout/{session}`` (a Pay button) completes the
session like Stripe Checkout does (customer's subscription active, first invoice paid, the
events delivered) and redirects to ``success_url``; ``GET /portal/{session}`` shows a page.
Test controls (plain methods): ``fail_payment``, ``recover_payment``, ``cancel``, ``deliver``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from tests.support.net import free_port

MONTH_S = 30 * 24 * 3600
PARAMS = web.RequestKey("params", dict)
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}{int(time.time() * 1000) % 100000:05d}"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part, after in zip(parts, [*parts[1:], None], strict=True):
            if after is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def error(status: int, kind: str, message: str, code: str | None = None,
          param: str | None = None) -> web.Response:
    body = {"error": {"type": kind, "message": message, "code": code, "param": param}}
    return web.json_response(body, status=status, headers={"Request-Id": new_id("req")})


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_fake_0123456789"
    webhook_secret: str = "whsec_fake_0123456789"
    webhook_url: str | None = None
    port: int = field(default_factory=free_port)
    # price id -> (amount in cents, "month" | "year")
    prices: dict[str, tuple[int, str]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail_next: int = 0

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._idempotent: dict[str, tuple[str, int, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"STRIPE_SECRET_KEY": self.secret_key,
                "STRIPE_WEBHOOK_SECRET": self.webhook_secret, "STRIPE_API_BASE": self.url}

    async def start(self) -> None:
        app = web.Application(middlewares=[self._api_guard])
        app.add_routes([
            web.post("/v1/customers", self.create_customer),
            web.get("/v1/customers/{id}", self.get_customer),
            web.post("/v1/customers/{id}", self.update_customer),
            web.post("/v1/checkout/sessions", self.create_session),
            web.post("/v1/billing_portal/sessions", self.create_portal),
            web.get("/v1/subscriptions/{id}", self.get_subscription),
            web.get("/v1/invoices/{id}", self.get_invoice),
            web.post("/v1/billing/meter_events", self.create_meter_event),
            web.get("/checkout/{id}", self.checkout_page),
            web.post("/checkout/{id}/pay", self.checkout_pay),
            web.get("/portal/{id}", self.portal_page),
        ])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API's envelope: auth, idempotency, injected failures ---------------------------

    @web.middleware
    async def _api_guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return error(401, "invalid_request_error", "Invalid API Key provided")
        raw = (await request.read()).decode()
        params = parse_form(raw) if request.method == "POST" else {}
        request[PARAMS] = params
        self.requests.append((request.method, request.path, params))
        if self.fail_next > 0:
            self.fail_next -= 1
            return error(500, "api_error", "Something went wrong on Stripe's end.")
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        fingerprint = f"{request.path}?{raw}"
        seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                return error(400, "idempotency_error",
                             "Keys for idempotent requests can only be used with the same "
                             "parameters they were first used with.")
            return web.json_response(seen[2], status=seen[1],
                                     headers={"Idempotent-Replayed": "true"})
        response = await handler(request)
        if isinstance(response, web.Response) and response.status < 500 and response.text:
            self._idempotent[key] = (fingerprint, response.status, json.loads(response.text))
        return response

    # -- customers --------------------------------------------------------------------------

    async def create_customer(self, request: web.Request) -> web.Response:
        params = request[PARAMS]
        customer = {"id": new_id("cus"), "object": "customer", "email": params.get("email"),
                    "metadata": params.get("metadata", {}), "address": None,
                    "created": int(time.time()), "livemode": False}
        self.customers[customer["id"]] = customer
        return web.json_response(customer)

    async def get_customer(self, request: web.Request) -> web.Response:
        found = self.customers.get(request.match_info["id"])
        if found is None:
            return self._missing("customer", request.match_info["id"])
        return web.json_response(found)

    async def update_customer(self, request: web.Request) -> web.Response:
        found = self.customers.get(request.match_info["id"])
        if found is None:
            return self._missing("customer", request.match_info["id"])
        found.update(request[PARAMS])
        await self.deliver("customer.updated", found)
        return web.json_response(found)

    # -- checkout and portal ----------------------------------------------------------------

    async def create_session(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        for name in ("mode", "success_url", "line_items"):
            if name not in p:
                return error(400, "invalid_request_error", f"Missing required param: {name}.",
                             "parameter_missing", name)
        price = p["line_items"][0].get("price")
        if price not in self.prices:
            return error(400, "invalid_request_error", f"No such price: '{price}'",
                         "resource_missing", "line_items[0][price]")
        if p.get("customer") and p["customer"] not in self.customers:
            return self._missing("customer", p["customer"])
        session_id = new_id("cs_test")
        session = {"id": session_id, "object": "checkout.session", "mode": p["mode"],
                   "customer": p.get("customer"), "client_reference_id":
                   p.get("client_reference_id"), "metadata": p.get("metadata", {}),
                   "success_url": p["success_url"], "cancel_url": p.get("cancel_url"),
                   "status": "open", "payment_status": "unpaid", "subscription": None,
                   "line_items_price": price, "url": f"{self.url}/checkout/{session_id}"}
        self.sessions[session_id] = session
        return web.json_response(session)

    async def create_portal(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        if p.get("customer") not in self.customers:
            return self._missing("customer", str(p.get("customer")))
        portal_id = new_id("bps")
        return web.json_response({"id": portal_id, "object": "billing_portal.session",
                                  "customer": p["customer"], "return_url": p.get("return_url"),
                                  "url": f"{self.url}/portal/{portal_id}"})

    async def checkout_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound()
        html = (f"<!doctype html><title>Checkout</title><h1>Pay for {session['line_items_price']}"
                f"</h1><form method=post action='/checkout/{session['id']}/pay'>"
                "<button id=pay type=submit>Pay</button></form>")
        return web.Response(text=html, content_type="text/html")

    async def checkout_pay(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound()
        if session["status"] == "open":
            await self.complete(session["id"])
        raise web.HTTPSeeOther(session["success_url"])

    async def portal_page(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Portal</title><h1>Billing portal</h1>",
                            content_type="text/html")

    async def complete(self, session_id: str) -> dict[str, Any]:
        """What paying on the Checkout page does: subscription active, first invoice paid,
        the events delivered in Stripe's order."""
        session = self.sessions[session_id]
        if session["customer"] is None:
            session["customer"] = (await self._new_customer())["id"]
        sub = self.new_subscription(session["customer"], session["line_items_price"])
        session.update(status="complete", payment_status="paid", subscription=sub["id"])
        invoice = self.new_invoice(sub, paid=True)
        await self.deliver("checkout.session.completed", session)
        await self.deliver("customer.subscription.created", sub)
        for kind in ("invoice.created", "invoice.finalized", "invoice.paid"):
            await self.deliver(kind, invoice)
        return sub

    async def _new_customer(self) -> dict[str, Any]:
        customer = {"id": new_id("cus"), "object": "customer", "email": None, "metadata": {},
                    "address": None}
        self.customers[customer["id"]] = customer
        return customer

    # -- subscriptions and invoices ---------------------------------------------------------

    def new_subscription(self, customer: str, price: str) -> dict[str, Any]:
        now = int(time.time())
        amount, interval = self.prices[price]
        sub = {"id": new_id("sub"), "object": "subscription", "customer": customer,
               "status": "active", "cancel_at_period_end": False, "canceled_at": None,
               "trial_start": None, "trial_end": None, "created": now,
               "items": {"object": "list", "data": [{
                   "id": new_id("si"), "object": "subscription_item",
                   "price": {"id": price, "object": "price", "unit_amount": amount,
                             "recurring": {"interval": interval}},
                   "current_period_start": now, "current_period_end": now + MONTH_S}]}}
        self.subscriptions[sub["id"]] = sub
        return sub

    def new_invoice(self, sub: dict[str, Any], *, paid: bool) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        invoice_id = new_id("in")
        invoice = {"id": invoice_id, "object": "invoice", "customer": sub["customer"],
                   "status": "paid" if paid else "open", "currency": "usd",
                   "amount_due": item["price"]["unit_amount"],
                   "amount_paid": item["price"]["unit_amount"] if paid else 0,
                   "period_start": item["current_period_start"],
                   "period_end": item["current_period_end"],
                   "invoice_pdf": f"{self.url}/invoices/{invoice_id}.pdf",
                   "hosted_invoice_url": f"{self.url}/invoices/{invoice_id}",
                   "status_transitions": {"paid_at": int(time.time()) if paid else None},
                   "parent": {"type": "subscription_details",
                              "subscription_details": {"subscription": sub["id"]}}}
        self.invoices[invoice_id] = invoice
        return invoice

    async def get_subscription(self, request: web.Request) -> web.Response:
        found = self.subscriptions.get(request.match_info["id"])
        if found is None:
            return self._missing("subscription", request.match_info["id"])
        return web.json_response(found)

    async def get_invoice(self, request: web.Request) -> web.Response:
        found = self.invoices.get(request.match_info["id"])
        if found is None:
            return self._missing("invoice", request.match_info["id"])
        return web.json_response(found)

    async def fail_payment(self, sub_id: str) -> dict[str, Any]:
        """A renewal whose charge is declined: an open invoice, the subscription past_due."""
        sub = self.subscriptions[sub_id]
        invoice = self.new_invoice(sub, paid=False)
        sub["status"] = "past_due"
        await self.deliver("invoice.created", invoice)
        await self.deliver("invoice.payment_failed", invoice)
        await self.deliver("customer.subscription.updated", sub)
        return invoice

    async def recover_payment(self, sub_id: str, invoice_id: str) -> None:
        invoice = self.invoices[invoice_id]
        invoice.update(status="paid", amount_paid=invoice["amount_due"],
                       status_transitions={"paid_at": int(time.time())})
        self.subscriptions[sub_id]["status"] = "active"
        await self.deliver("invoice.paid", invoice)
        await self.deliver("customer.subscription.updated", self.subscriptions[sub_id])

    async def cancel(self, sub_id: str, *, period_over: bool = True) -> None:
        """Dunning gave up (or the customer cancelled): the subscription is canceled; with
        ``period_over`` the paid period has ended too."""
        sub = self.subscriptions[sub_id]
        now = int(time.time())
        sub.update(status="canceled", canceled_at=now)
        if period_over:
            sub["items"]["data"][0]["current_period_end"] = now - 1
        await self.deliver("customer.subscription.deleted", sub)

    # -- meter events -----------------------------------------------------------------------

    async def create_meter_event(self, request: web.Request) -> web.Response:
        p = request[PARAMS]
        for name in ("event_name", "payload"):
            if name not in p:
                return error(400, "invalid_request_error", f"Missing required param: {name}.",
                             "parameter_missing", name)
        identifier = p.get("identifier") or new_id("mev")
        event = {"object": "billing.meter_event", "event_name": p["event_name"],
                 "identifier": identifier, "payload": p["payload"],
                 "timestamp": int(p.get("timestamp") or time.time()), "livemode": False}
        # Stripe enforces identifier uniqueness: a repeat is not counted twice.
        self.meter_events.setdefault(identifier, event)
        return web.json_response(event)

    # -- webhooks ---------------------------------------------------------------------------

    def event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id("evt"), "object": "event", "type": kind,
                "api_version": "2025-03-31.basil", "created": int(time.time()),
                "livemode": False, "pending_webhooks": 1,
                "data": {"object": json.loads(json.dumps(obj))}}

    async def deliver(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Record an event and POST it, signed, to ``webhook_url`` (if set)."""
        event = self.event(kind, obj)
        self.events.append(event)
        if self.webhook_url is not None:
            await self.send(event)
        return event

    async def send(
        self, event: dict[str, Any], *, secret: str | None = None,
        timestamp: int | None = None, body: bytes | None = None, tamper: bool = False,
    ) -> tuple[int, Any]:
        """POST one event as Stripe does; the other arguments forge, age or alter it
        (``tamper``: the body is changed after it was signed)."""
        assert self.webhook_url is not None
        payload = body if body is not None else json.dumps(event).encode()
        header = sign(payload, secret or self.webhook_secret, timestamp)
        if tamper:
            payload = payload.replace(b'"active"', b'"unpaid"')
        async with aiohttp.ClientSession() as session, session.post(
            self.webhook_url, data=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    def _missing(self, kind: str, object_id: str) -> web.Response:
        return error(404, "invalid_request_error", f"No such {kind}: '{object_id}'",
                     "resource_missing", "id")
