"""The official ``stripe`` library's async client, built from ``BillingConfig``.

Requests go through aiohttp (``stripe.AIOHTTPClient``) on the running loop; ``api_base``
points every API family at one address (Stripe itself, or the local wire-format server of
the tests). The library sends the form-encoded bodies, ``Idempotency-Key`` headers and
retries, and raises its typed errors from Stripe's error objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from billing.config import BillingConfig

if TYPE_CHECKING:
    import stripe

# The API version this code reads objects in (current_period_* on subscription items).
API_VERSION = "2025-03-31.basil"


def make_client(
    config: BillingConfig, http: stripe.AIOHTTPClient
) -> stripe.StripeClient:
    import stripe  # deferred: stripe (with aiohttp) is ~0.5 s of the server's start-up

    assert config.secret_key, "billing is disabled without STRIPE_SECRET_KEY"
    base = config.api_base
    return stripe.StripeClient(
        config.secret_key,
        stripe_version=API_VERSION,
        base_addresses={"api": base, "connect": base, "files": base, "meter_events": base},
        http_client=http,
        max_network_retries=2,
    )
