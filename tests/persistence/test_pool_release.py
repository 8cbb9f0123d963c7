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
