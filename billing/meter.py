"""AI tokens of metered plans (features ``metered_ai``) reported to a Stripe Billing meter.

Every hour the ``billing.meter_ai`` job takes the last whole UTC hour: per payer on a metered
plan with a Stripe customer, the tokens recorded in their workspaces during that window become
one ``billing_meter_reports`` row, whose ``identifier`` is the meter event's identifier. Stripe
deduplicates meter events by identifier, and a row is marked ``reported_at`` only after Stripe
accepted it, so retries and reruns report each window exactly once. Rows not yet reported
(Stripe was down) are sent again by the next run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

import jobs
from billing.events import BillingRuntime
from persistence.db import Database

if TYPE_CHECKING:
    import stripe

WINDOW = timedelta(hours=1)
# Per metered payer with a customer: their tokens in [start, start + window).
COLLECT_WINDOW = """
insert into public.billing_meter_reports (owner_id, window_start, tokens, identifier)
select c.user_id, $1::timestamptz, coalesce(sum(u.amount), 0)::bigint,
       'ai_tokens:' || c.user_id::text || ':' || extract(epoch from $1::timestamptz)::bigint
from public.customers c
cross join lateral public.billing_plan_of(c.user_id) bp
left join public.workspaces w on w.owner_id = c.user_id
left join public.usage_records u
  on u.workspace_id = w.id and u.resource_type = 'ai_tokens'
 and u.recorded_at >= $1 and u.recorded_at < $1 + $2::interval
where bp.features ? 'metered_ai'
group by c.user_id
having coalesce(sum(u.amount), 0) > 0
on conflict (owner_id, window_start) do nothing
"""
SELECT_UNREPORTED = """
select r.owner_id, r.window_start, r.tokens, r.identifier, c.stripe_customer_id
from public.billing_meter_reports r join public.customers c on c.user_id = r.owner_id
where r.reported_at is null
order by r.window_start
limit 500
"""
MARK_REPORTED = """
update public.billing_meter_reports set reported_at = now() where identifier = $1
"""


class MeterInput(BaseModel):
    pass


def last_window(now: datetime, window: timedelta = WINDOW) -> datetime:
    """The start of the last whole window before ``now`` (UTC, epoch-aligned)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    whole = (now - epoch) // window
    return epoch + (whole - 1) * window


async def report_window(
    db: Database, client: stripe.StripeClient, event_name: str, start: datetime,
    window: timedelta = WINDOW,
) -> dict[str, Any]:
    async with db.service() as conn:
        await conn.execute(COLLECT_WINDOW, start, window)
        pending = await conn.fetch(SELECT_UNREPORTED)
    sent = 0
    for row in pending:
        end = row["window_start"] + window - timedelta(seconds=1)
        await client.v1.billing.meter_events.create_async(params={
            "event_name": event_name,
            "identifier": row["identifier"],
            "timestamp": int(end.timestamp()),
            "payload": {"stripe_customer_id": row["stripe_customer_id"],
                        "value": str(row["tokens"])},
        })
        async with db.service() as conn:
            await conn.execute(MARK_REPORTED, row["identifier"])
        sent += 1
    return {"window_start": start.isoformat(), "reported": sent}


@jobs.job("billing.meter_ai", input=MeterInput, job_type="sync", every=WINDOW, timeout=600,
          concurrency=1, max_attempts=5)
async def meter_ai(ctx: jobs.JobContext, payload: MeterInput) -> dict[str, Any]:
    try:
        rt = ctx.resource(BillingRuntime)
    except jobs.PermanentJobError:
        return {"status": "skipped", "reason": "billing is disabled"}
    start = last_window(datetime.now(UTC))
    return await report_window(ctx.db, rt.client, rt.config.meter_event_name, start)


JOBS = [meter_ai]
