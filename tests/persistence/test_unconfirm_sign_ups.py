"""0161: emails "confirmed" by the old password sign-up lose that mark; no other does."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg

from persistence.migrate import MIGRATIONS_DIR, migrate
from tests.support.databases import PostgresForTests

CREATE = """
insert into auth.users (email, encrypted_password, raw_app_meta_data, email_confirmed_at,
                        created_at)
values ($1, $2, $3::jsonb, now(), now()) returning id
"""


async def test_only_old_password_sign_ups_are_unconfirmed(
    postgres: PostgresForTests, tmp_path: Path
) -> None:
    for path in MIGRATIONS_DIR.glob("0*.sql"):
        if path.name < "0161":
            shutil.copy(path, tmp_path / path.name)
    dsn = await postgres.create_empty_database()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, tmp_path)
            signed_up = await conn.fetchval(CREATE, "pw@example.test", "hash", "{}")
            oauth = await conn.fetchval(CREATE, "oauth@example.test", None,
                                        '{"provider": "github"}')
            supabase = await conn.fetchval(CREATE, "sb@example.test", "hash",
                                           '{"provider": "email"}')
            connected = await conn.fetchval(CREATE, "both@example.test", "hash", "{}")
            await conn.execute(
                "insert into public.oauth_connections (user_id, provider, provider_user_id,"
                " access_token) values ($1, 'gitlab', '1', 'x')", connected)
            shutil.copy(MIGRATIONS_DIR / "0161_unconfirm_password_sign_ups.sql", tmp_path)
            assert await migrate(conn, tmp_path) == ["0161"]
            confirmed = {r["id"]: r["email_confirmed_at"] is not None for r in await conn.fetch(
                "select id, email_confirmed_at from auth.users")}
        finally:
            await conn.close()
    finally:
        await postgres.drop_database(dsn)
    assert confirmed == {signed_up: False, oauth: True, supabase: True, connected: True}
