"""Writes of the observability tables: api_logs, error_logs, analytics_events,
performance_metrics; and the service operators.

api_logs, error_logs and performance_metrics are written as the service by the app's own
writers (no user is involved in a log row's insertion); analytics events are inserted as the
user, under the insert policy of 0016/0060 (own user, member of the workspace).
jsonb values of a batch go in as a text[] of JSON, cast in SQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

API_LOG_COLUMNS = (
    "created_at", "user_id", "workspace_id", "endpoint", "method", "status_code", "duration_ms",
    "ip_address", "user_agent", "request_bytes", "response_bytes",
)
# One api_logs row, in API_LOG_COLUMNS order.
ApiLogRecord = tuple[
    datetime, uuid.UUID | None, uuid.UUID | None, str, str, int, int, str | None, str | None,
    int | None, int | None,
]

EXISTING_USERS = "select id from public.users where id = any($1::uuid[])"

INSERT_ERROR_LOGS = """
insert into public.error_logs
  (created_at, user_id, project_id, sentry_issue_id, error_type, message, stack_trace, context,
   severity, environment)
select r.at, r.user_id, r.project_id, r.sentry_id, r.error_type, r.message, r.stack,
       r.context::jsonb, r.severity, r.environment
from unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[])
  as r(at, user_id, project_id, sentry_id, error_type, message, stack, context, severity,
       environment)
"""
# Ids that no longer exist become null rather than failing the whole batch.
EXISTING_PROJECTS = "select id from public.projects where id = any($1::uuid[])"

INSERT_PERFORMANCE_METRICS = """
insert into public.performance_metrics (metric_name, metric_type, value, unit, tags, recorded_at)
select r.name, r.type, r.value, r.unit, r.tags::jsonb, r.at
from unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::text[], $6::timestamptz[])
  as r(name, type, value, unit, tags, at)
"""

# As the user: serialises this user's batches, then counts what they sent in the last minute
# (their own rows are visible to them, 0087).
LOCK_USER_ANALYTICS = "select pg_advisory_xact_lock(hashtextextended('analytics:' || $1, 0))"
COUNT_RECENT_ANALYTICS = """
select count(*) from public.analytics_events
where user_id = $1 and created_at > now() - interval '1 minute'
"""
INSERT_ANALYTICS_EVENTS = """
insert into public.analytics_events
  (user_id, workspace_id, event_name, event_category, properties, session_id, page_url, referrer)
select $1, $2, e.name, e.category, e.properties::jsonb, $3, e.page_url, e.referrer
from unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
  as e(name, category, properties, page_url, referrer)
"""

GRANT_OPERATOR = """
insert into public.service_operators (user_id, note)
select id, $2 from public.users where lower(email) = lower($1)
on conflict (user_id) do update set note = excluded.note
returning user_id
"""
REVOKE_OPERATOR = """
delete from public.service_operators o using public.users u
where u.id = o.user_id and lower(u.email) = lower($1)
returning o.user_id
"""
LIST_OPERATORS = """
select u.email, o.granted_at, o.note from public.service_operators o
join public.users u on u.id = o.user_id order by u.email
"""
IS_OPERATOR = "select public.is_service_operator()"


async def copy_api_logs(conn: asyncpg.Connection, records: Sequence[ApiLogRecord]) -> None:
    """COPY the rows into the partitioned parent (PostgreSQL routes them to their month).

    A user deleted while their token was still valid would fail the whole batch on the
    foreign key: such user ids are set to null and the batch is written again.
    """
    try:
        await conn.copy_records_to_table(
            "api_logs", schema_name="public", records=records, columns=API_LOG_COLUMNS
        )
    except asyncpg.ForeignKeyViolationError:
        user_ids = list({r[1] for r in records if r[1] is not None})
        known = {row["id"] for row in await conn.fetch(EXISTING_USERS, user_ids)}
        cleaned = [r if r[1] is None or r[1] in known else (r[0], None, *r[2:]) for r in records]
        await conn.copy_records_to_table(
            "api_logs", schema_name="public", records=cleaned, columns=API_LOG_COLUMNS
        )


async def insert_error_logs(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    users = list({r["user_id"] for r in rows if r["user_id"] is not None})
    projects = list({r["project_id"] for r in rows if r["project_id"] is not None})
    known_users = {r["id"] for r in await conn.fetch(EXISTING_USERS, users)} if users else set()
    known_projects = (
        {r["id"] for r in await conn.fetch(EXISTING_PROJECTS, projects)} if projects else set()
    )
    await conn.execute(
        INSERT_ERROR_LOGS,
        [r["created_at"] for r in rows],
        [r["user_id"] if r["user_id"] in known_users else None for r in rows],
        [r["project_id"] if r["project_id"] in known_projects else None for r in rows],
        [r["sentry_issue_id"] for r in rows],
        [r["error_type"] for r in rows],
        [r["message"] for r in rows],
        [r["stack_trace"] for r in rows],
        [json.dumps(r["context"]) for r in rows],
        [r["severity"] for r in rows],
        [r["environment"] for r in rows],
    )


async def insert_performance_metrics(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, float, str, dict[str, Any], datetime]]
) -> None:
    await conn.execute(
        INSERT_PERFORMANCE_METRICS,
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
        [json.dumps(r[4]) for r in rows], [r[5] for r in rows],
    )


async def recent_analytics_count(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    """This user's events of the last minute, with their batches serialised (as the user)."""
    await conn.execute(LOCK_USER_ANALYTICS, str(user_id))
    count: int = await conn.fetchval(COUNT_RECENT_ANALYTICS, user_id)
    return count


async def insert_analytics_events(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    workspace_id: uuid.UUID | None,
    session_id: str | None,
    events: Sequence[dict[str, Any]],
) -> None:
    await conn.execute(
        INSERT_ANALYTICS_EVENTS, user_id, workspace_id, session_id,
        [e["name"] for e in events], [e["category"] for e in events],
        [json.dumps(e["properties"]) for e in events], [e["page_url"] for e in events],
        [e["referrer"] for e in events],
    )


async def grant_operator(conn: asyncpg.Connection, email: str, note: str | None) -> bool:
    return await conn.fetchval(GRANT_OPERATOR, email, note) is not None


async def revoke_operator(conn: asyncpg.Connection, email: str) -> bool:
    return await conn.fetchval(REVOKE_OPERATOR, email) is not None


async def list_operators(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(LIST_OPERATORS))


async def is_operator(conn: asyncpg.Connection) -> bool:
    """Whether the user of this ``as_user`` transaction is a service operator."""
    return bool(await conn.fetchval(IS_OPERATOR))
