"""Monthly partitions of analytics_events, api_logs and usage_records."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from persistence.db import Database
from persistence.maintenance import (
    PARTITIONED_TABLES,
    drop_expired_partitions,
    ensure_partitions,
)
from tests.support import factories

PARTITION_NAME_AT = """
select $1::text || '_p'
       || to_char(date_trunc('month', $2::text::timestamptz at time zone 'UTC'), 'YYYY_MM')
"""
PARTITIONS_OF = """
select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
where i.inhparent = $1::text::regclass order by c.relname
"""
MONTH_START = """
select (date_trunc('month', now() at time zone 'UTC') + make_interval(months => $1))
       at time zone 'UTC'
"""


async def _partition_of(conn: asyncpg.Connection, table: str, row_id: uuid.UUID) -> str:
    name: str = await conn.fetchval(
        f"select c.relname from {table} t join pg_class c on c.oid = t.tableoid"
        " where t.id = $1", row_id
    )
    return name


async def _expected(conn: asyncpg.Connection, table: str, at: datetime | str) -> str:
    """The partition name for time ``at`` (a datetime or a timestamptz literal)."""
    text = at if isinstance(at, str) else at.isoformat()
    name: str = await conn.fetchval(PARTITION_NAME_AT, table, text)
    return name


async def test_inserts_for_this_and_next_month_land_in_their_partitions(db: Database) -> None:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        for months in (0, 1):
            at = await conn.fetchval("select now() + make_interval(months => $1)", months)
            log_id = await conn.fetchval(
                "insert into public.api_logs (user_id, endpoint, method, status_code, created_at)"
                " values ($1, '/x', 'GET', 200, $2) returning id", user, at,
            )
            event_id = await conn.fetchval(
                "insert into public.analytics_events (user_id, event_name, event_category,"
                " created_at) values ($1, 'open', 'editor', $2) returning id", user, at,
            )
            usage_id = await conn.fetchval(
                "insert into public.usage_records (user_id, resource_type, amount, unit,"
                " recorded_at) values ($1, 'ai_tokens', 12, 'tokens', $2) returning id",
                user, at,
            )
            assert await _partition_of(conn, "public.api_logs", log_id) == await _expected(
                conn, "api_logs", at
            )
            assert await _partition_of(
                conn, "public.analytics_events", event_id
            ) == await _expected(conn, "analytics_events", at)
            assert await _partition_of(
                conn, "public.usage_records", usage_id
            ) == await _expected(conn, "usage_records", at)


async def test_create_monthly_partitions_is_idempotent(db: Database) -> None:
    async with db.acquire() as conn:
        await ensure_partitions(conn)  # a no-op unless the month turned since migrating
        assert await ensure_partitions(conn) == []
        created = await ensure_partitions(conn, months_ahead=4)
        expected = []
        for table in PARTITIONED_TABLES:
            short = table.split(".")[1]
            for months in (3, 4):
                expected.append(
                    await _expected(conn, short, await conn.fetchval(MONTH_START, months))
                )
        assert created == expected
        assert await ensure_partitions(conn, months_ahead=4) == []
        names = [r[0] for r in await conn.fetch(PARTITIONS_OF, "public.api_logs")]
        assert len(names) == 6  # default + this month .. +4
        assert "api_logs_default" in names


async def test_rows_waiting_in_the_default_partition_move_to_their_month(db: Database) -> None:
    async with db.acquire() as conn:
        user = await factories.create_user(conn)
        later = await conn.fetchval("select now() + interval '7 months'")
        row_id = await conn.fetchval(
            "insert into public.api_logs (user_id, endpoint, method, status_code, created_at)"
            " values ($1, '/late', 'POST', 201, $2) returning id", user, later,
        )
        assert await _partition_of(conn, "public.api_logs", row_id) == "api_logs_default"
        created = await conn.fetch(
            "select public.create_monthly_partitions('public.api_logs', 7)"
        )
        target = await _expected(conn, "api_logs", later)
        assert target in [r[0] for r in created]
        assert await _partition_of(conn, "public.api_logs", row_id) == target
        assert await conn.fetchval("select count(*) from public.api_logs_default") == 0
        # The moved-into partition is a full partition: every index of the parent (the key,
        # the seed's three, 0085's two) and locked-down privileges.
        indexes = "select count(*) from pg_index where indrelid = $1::text::regclass"
        assert await conn.fetchval(indexes, target) == await conn.fetchval(
            indexes, "public.api_logs"
        ) == 6
        assert not await conn.fetchval(
            "select has_table_privilege('authenticated', $1::text::regclass, 'select')", target
        )


async def test_drop_old_partitions_drops_only_whole_expired_months(db: Database) -> None:
    async with db.acquire() as conn:
        user = await factories.create_user(conn)
        # Synthetic old partitions: one long expired, one inside the 90-day retention.
        await conn.execute(
            "create table public.usage_records_p2020_01 partition of public.usage_records"
            " for values from ('2020-01-01 00:00+00') to ('2020-02-01 00:00+00')"
        )
        bounds = await conn.fetchrow(
            "select m::text as lo, (m + interval '1 month')::text as hi from (select"
            " date_trunc('month', (now() - interval '80 days') at time zone 'UTC') as m) s"
        )
        assert bounds is not None
        recent_start, recent_end = bounds["lo"], bounds["hi"]
        recent = await _expected(conn, "usage_records", recent_start + "+00")
        await conn.execute(
            f"create table public.{recent} partition of public.usage_records"
            f" for values from ('{recent_start}+00') to ('{recent_end}+00')"
        )
        insert = (
            "insert into public.usage_records (user_id, resource_type, amount, unit, recorded_at)"
            " values ($1, 'executions', 1, 'runs', $2)"
        )
        await conn.execute(insert, user, await conn.fetchval("select '2020-01-15'::timestamptz"))
        await conn.execute(insert, user, await conn.fetchval("select '2019-06-01'::timestamptz"))
        far = await conn.fetchval("select now() + interval '10 months'")
        await conn.execute(insert, user, far)  # future row waiting in the default partition

        dropped = await drop_expired_partitions(conn, retention_days=90)

        assert dropped == ["usage_records_p2020_01"]
        names = [r[0] for r in await conn.fetch(PARTITIONS_OF, "public.usage_records")]
        assert recent in names and "usage_records_p2020_01" not in names
        assert await conn.fetchval("select count(*) from public.usage_records_default") == 1
        assert await conn.fetchval(
            "select count(*) from public.usage_records where recorded_at < '2021-01-01'"
        ) == 0
        assert await drop_expired_partitions(conn, retention_days=90) == []


async def test_every_partition_has_rls_and_no_grants_for_api_roles(db: Database) -> None:
    async with db.acquire() as conn:
        await ensure_partitions(conn, months_ahead=3)
        rows = await conn.fetch(
            "select c.oid::regclass::text as name, c.relrowsecurity,"
            " has_table_privilege('authenticated', c.oid, 'select,insert,update,delete') as auth,"
            " has_table_privilege('anon', c.oid, 'select,insert,update,delete') as anon"
            " from pg_class c where c.relispartition and c.relnamespace = 'public'::regnamespace"
            " and c.relkind = 'r'"
        )
        assert len(rows) == 3 * 5  # default + 4 months for each of the three tables
        for row in rows:
            assert row["relrowsecurity"], row["name"]
            assert not row["auth"] and not row["anon"], row["name"]

