"""Billing settings from the environment (``Settings.billing``).

No ``STRIPE_SECRET_KEY``: billing is disabled (its endpoints answer 503 ``billing_disabled``)
and every payer is on the free plan, since no subscription can come into being.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_API_BASE = "https://api.stripe.com"


@dataclass(frozen=True)
class BillingConfig:
    secret_key: str | None = None
    webhook_secret: str | None = None
    # Where the stripe library sends its requests (tests: the local Stripe-wire server).
    api_base: str = DEFAULT_API_BASE
    # Seconds a webhook's signed timestamp may be off (Stripe's library default is 300).
    webhook_tolerance_s: int = 300
    # Where Checkout and the Customer Portal send the browser back (None: the address the
    # request came to, i.e. the IDE page's own origin).
    return_url: str | None = None
    # The Stripe Billing meter (event_name) fed with the AI tokens of metered plans.
    meter_event_name: str = "ai_tokens"

    @property
    def enabled(self) -> bool:
        return bool(self.secret_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BillingConfig:
        d = cls()
        return cls(
            secret_key=env.get("STRIPE_SECRET_KEY") or None,
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
            api_base=(env.get("STRIPE_API_BASE") or d.api_base).rstrip("/"),
            webhook_tolerance_s=int(env.get("STRIPE_WEBHOOK_TOLERANCE", d.webhook_tolerance_s)),
            return_url=env.get("BILLING_RETURN_URL") or None,
            meter_event_name=env.get("STRIPE_METER_EVENT_NAME") or d.meter_event_name,
        )
