"""Billing: plans and their limits, Stripe subscriptions, invoices and metered AI use.

- ``limits``: every limit is taken in the transaction that creates the resource
  (``public.billing_take``: a per-payer lock, then count and compare), so no request
  overshoots a plan under concurrency; a refusal is ``PlanLimitReached`` (HTTP 402).
- ``stripe_api``: the official ``stripe`` library's async client, base URL configurable.
- ``webhooks``: a verified event is stored in ``webhook_logs`` before anything else and
  processed by the ``billing.stripe_event`` job, idempotent by event id, from the object's
  current state in Stripe (never from arrival order).
- ``meter``: AI tokens of metered plans reported to a Stripe meter once per usage window.

The payer of a workspace is its owner (``workspaces.owner_id``): a user's subscription covers
the workspaces they own. Rules in docs/billing.md.
"""
