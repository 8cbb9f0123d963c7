"""Pooled connections are released without asyncpg's reset query (persistence/db.py):
nothing a user transaction set may leak to the next borrower."""

from __future__ import annotations

import uuid

import pytest

from persistence.db import Database


async def test_user_context_does_not_outlive_its_transaction(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=1)  # one connection
    try:
        async with db.acquire() as conn:
            service_role = await conn.fetchval("select current_user")
        async with db.as_user(str(uuid.uuid4())) as conn:
            assert await conn.fetchval("select current_user") == "authenticated"
        with pytest.raises(RuntimeError):
            async with db.as_user(str(uuid.uuid4())) as conn:
                await conn.fetchval("select 1")
                raise RuntimeError("fails inside the transaction")
        async with db.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("select current_user") == service_role
            assert not await conn.fetchval("select current_setting('request.jwt.claims', true)")
            assert not await conn.fetchval(
                "select count(*) from pg_locks where locktype = 'advisory'"
                " and pid = pg_backend_pid()"
            )
    finally:
        await db.close()


async def test_as_user_after_checks_as_the_service_then_runs_as_the_user(
    database_url: str,
) -> None:
    """The first statement reads as the service (the check sees what RLS would hide) and
    switches to the user whether or not it matched; the context ends with the transaction."""
    from persistence.db import USER_CONTEXT_COLUMNS

    check = f"""
    select a.*, {USER_CONTEXT_COLUMNS}
    from (select) one left join (select current_user as who, $1::int + $2::int as total
                                 where $1::int > 0) a on true
    """
    db = await Database.connect(database_url, min_size=1, max_size=1)
    user_id = str(uuid.uuid4())
    try:
        async with db.acquire() as conn:
            service_role = await conn.fetchval("select current_user")
        for first, expected_total in ((1, 3), (0, None)):
            async with db.as_user_after(user_id, check, first, 2, {"email": "a@b.c"}) as (
                conn, row,
            ):
                assert row["total"] == expected_total
                assert row["who"] == (service_role if expected_total else None)
                assert await conn.fetchval("select current_user") == "authenticated"
                assert await conn.fetchval("select auth.uid()::text") == user_id
                claims = await conn.fetchval("select current_setting('request.jwt.claims')")
                assert '"email": "a@b.c"' in claims
        with pytest.raises(RuntimeError):
            not_switching = "select ($1::int + $2::int)::text || $3 || $4 as user_context_role"
            async with db.as_user_after(user_id, not_switching, 1, 2):
                pass
        async with db.acquire() as conn:
            assert await conn.fetchval("select current_user") == service_role
            assert not await conn.fetchval("select current_setting('request.jwt.claims', true)")
    finally:
        await db.close()
