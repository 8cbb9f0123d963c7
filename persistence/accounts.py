"""Accounts: auth users, profiles, sign-in sessions, refresh tokens, sign-in attempts.

Functions take a connection so the caller decides who runs them: the auth endpoints use the
service (nobody is signed in yet), profile and session reads use ``Database.as_user``.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

# A password sign-up proves nothing about the address (no confirmation mail is sent), so
# its email stays unconfirmed: an OAuth sign-in never links to it (server/oauth/linking.py).
INSERT_AUTH_USER = """
insert into auth.users (email, encrypted_password, raw_user_meta_data, aud, role,
                        email_confirmed_at, last_sign_in_at)
values ($1, $2, $3, 'authenticated', 'authenticated', null, now())
returning id
"""
# A signed-in user connected a provider that verified this same address.
CONFIRM_EMAIL = """
update auth.users set email_confirmed_at = now()
where id = $1 and lower(email) = lower($2) and email_confirmed_at is null
"""
SELECT_CREDENTIALS = """
select id, email, encrypted_password, raw_user_meta_data
from auth.users
where lower(email) = lower($1) and deleted_at is null
  and (banned_until is null or banned_until < now())
"""
UPDATE_SIGNED_IN = """
update auth.users set last_sign_in_at = now(), encrypted_password = coalesce($2, encrypted_password)
where id = $1
"""
PROFILE_COLUMNS = """
id, email, full_name, avatar_url, bio, github_username, twitter_username, website_url,
preferences, created_at, updated_at
"""
SELECT_PROFILE = f"select {PROFILE_COLUMNS} from public.users where id = $1"
PROFILE_FIELDS = (
    "full_name",
    "avatar_url",
    "bio",
    "github_username",
    "twitter_username",
    "website_url",
    "preferences",
)
SELECT_USER_ID_BY_EMAIL = "select id from public.users where lower(email) = lower($1)"
# OAuth sign-in: an account without a password, its email verified by the provider.
INSERT_OAUTH_USER = """
insert into auth.users (email, encrypted_password, raw_user_meta_data, raw_app_meta_data, aud,
                        role, email_confirmed_at, last_sign_in_at)
values ($1, null, $2, $3, 'authenticated', 'authenticated', now(), now())
returning id
"""
ACCOUNT_COLUMNS = """
id, email, raw_user_meta_data, email_confirmed_at,
deleted_at is null and (banned_until is null or banned_until < now()) as active
"""
SELECT_ACCOUNT_BY_EMAIL = f"select {ACCOUNT_COLUMNS} from auth.users where lower(email) = lower($1)"
SELECT_ACCOUNT = f"select {ACCOUNT_COLUMNS} from auth.users where id = $1"

INSERT_SESSION = """
insert into public.user_sessions_extended (user_id, ip_address, user_agent, device_type,
                                           browser, os)
values ($1, $2::inet, $3, $4, $5, $6)
returning id
"""
SESSION_COLUMNS = """
id, host(ip_address) as ip_address, user_agent, device_type, browser, os, country,
last_activity_at, created_at
"""
LIST_SESSIONS = f"""
select {SESSION_COLUMNS}
from public.user_sessions_extended
where user_id = $1 and revoked_at is null
  and ($2::timestamptz is null or (last_activity_at, id) < ($2, $3))
order by last_activity_at desc, id desc
limit $4
"""
TOUCH_SESSION = """
update public.user_sessions_extended set last_activity_at = now() where id = $1
"""
REVOKE_SESSION = """
update public.user_sessions_extended set revoked_at = coalesce(revoked_at, now())
where id = $1 and user_id = $2
returning id
"""
REVOKE_SESSION_TOKENS = """
update public.refresh_tokens set revoked_at = coalesce(revoked_at, now()) where session_id = $1
"""

INSERT_REFRESH_TOKEN = """
insert into public.refresh_tokens (token_hash, user_id, session_id, parent_id, expires_at)
values ($1, $2, $3, $4, now() + make_interval(secs => $5))
"""
# Locks the token row so two concurrent uses of one token cannot both rotate it.
SELECT_REFRESH_TOKEN = """
select t.id, t.user_id, t.session_id, t.rotated_at, t.revoked_at,
       t.expires_at <= now() as expired, s.revoked_at as session_revoked_at, u.email,
       u.raw_user_meta_data
from public.refresh_tokens t
join public.user_sessions_extended s on s.id = t.session_id
join auth.users u on u.id = t.user_id
where t.token_hash = $1
for update of t
"""
MARK_ROTATED = "update public.refresh_tokens set rotated_at = now() where id = $1"

INSERT_ATTEMPT = """
insert into public.auth_attempts (email, ip_address, succeeded, kind)
values ($1, $2::inet, $3, $4)
"""
# Sign-in failures for an email within the window: those from one ip since that ip's last
# success for the email, and all of them; each with the seconds until its oldest leaves.
ACCOUNT_FAILURES = """
with failures as (
  select ip_address, created_at from public.auth_attempts
  where email = $1 and kind = 'sign_in' and not succeeded
    and created_at > now() - make_interval(secs => $3)
),
pair_since as (
  select coalesce(max(created_at), '-infinity') as at from public.auth_attempts
  where email = $1 and kind = 'sign_in' and succeeded and ip_address is not distinct from $2::inet
)
select count(*) filter (where f.ip_address is not distinct from $2::inet
                          and f.created_at > p.at) as pair_failures,
       extract(epoch from min(f.created_at) filter (
         where f.ip_address is not distinct from $2::inet and f.created_at > p.at)
         + make_interval(secs => $3) - now()) as pair_retry_after,
       count(*) as account_failures,
       extract(epoch from min(f.created_at) + make_interval(secs => $3) - now())
         as account_retry_after
from failures f cross join pair_since p
"""
# Whether the account behind an email signed in from this ip within the period.
KNOWN_IP = """
select exists (
  select 1 from public.user_sessions_extended s
  join auth.users u on u.id = s.user_id
  where lower(u.email) = lower($1) and u.deleted_at is null
    and s.ip_address = $2::inet and s.created_at > now() - make_interval(secs => $3)
)
"""
IP_FAILURES = """
select count(*) as failures,
       extract(epoch from min(created_at) + make_interval(secs => $2) - now()) as retry_after
from public.auth_attempts
where ip_address = $1::inet and kind = 'sign_in' and not succeeded
  and created_at > now() - make_interval(secs => $2)
"""
# Sign-ups from an ip within the window: (count, seconds until the oldest leaves it).
IP_SIGN_UPS = """
select count(*) as sign_ups,
       extract(epoch from min(created_at) + make_interval(secs => $2) - now()) as retry_after
from public.auth_attempts
where ip_address = $1::inet and kind = 'sign_up'
  and created_at > now() - make_interval(secs => $2)
"""


async def create_auth_user(
    conn: asyncpg.Connection, email: str, password_hash: str, meta: dict[str, Any]
) -> uuid.UUID:
    """A new auth user (the profile row follows by trigger); raises UniqueViolation."""
    user_id: uuid.UUID = await conn.fetchval(INSERT_AUTH_USER, email, password_hash, meta)
    return user_id


async def create_oauth_user(
    conn: asyncpg.Connection, email: str, meta: dict[str, Any], app_meta: dict[str, Any]
) -> uuid.UUID:
    """A new auth user with no password (signs in through a provider); UniqueViolation if
    the email is taken."""
    user_id: uuid.UUID = await conn.fetchval(INSERT_OAUTH_USER, email, meta, app_meta)
    return user_id


async def confirm_email(conn: asyncpg.Connection, user_id: uuid.UUID, email: str) -> bool:
    """Mark the account's email confirmed if it is ``email`` (case-insensitive)."""
    return bool(await conn.execute(CONFIRM_EMAIL, user_id, email) == "UPDATE 1")


async def account_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ACCOUNT_BY_EMAIL, email)


async def account(conn: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ACCOUNT, user_id)


async def credentials(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_CREDENTIALS, email)


async def mark_signed_in(
    conn: asyncpg.Connection, user_id: uuid.UUID, new_hash: str | None = None
) -> None:
    await conn.execute(UPDATE_SIGNED_IN, user_id, new_hash)


async def profile(conn: asyncpg.Connection, user_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_PROFILE, user_id)
    return dict(row) if row else None


async def update_profile(
    conn: asyncpg.Connection, user_id: uuid.UUID, changes: dict[str, Any]
) -> dict[str, Any] | None:
    fields = [name for name in PROFILE_FIELDS if name in changes]
    if not fields:
        return await profile(conn, user_id)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(fields))
    query = f"update public.users set {assignments} where id = $1 returning {PROFILE_COLUMNS}"
    row = await conn.fetchrow(query, user_id, *(changes[name] for name in fields))
    return dict(row) if row else None


async def user_id_by_email(conn: asyncpg.Connection, email: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await conn.fetchval(SELECT_USER_ID_BY_EMAIL, email)
    return found


async def create_session(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    ip_address: str | None,
    user_agent: str | None,
    device_type: str | None,
    browser: str | None,
    os: str | None,
) -> uuid.UUID:
    session_id: uuid.UUID = await conn.fetchval(
        INSERT_SESSION, user_id, ip_address, user_agent, device_type, browser, os
    )
    return session_id


async def list_sessions(
    conn: asyncpg.Connection,
    user_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_SESSIONS, user_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def touch_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    await conn.execute(TOUCH_SESSION, session_id)


async def revoke_session(
    conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    """Revoke a session and every refresh token of its family; False if not the user's."""
    found = await conn.fetchval(REVOKE_SESSION, session_id, user_id)
    if found is None:
        return False
    await conn.execute(REVOKE_SESSION_TOKENS, session_id)
    return True


async def insert_refresh_token(
    conn: asyncpg.Connection,
    token_hash: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    ttl_s: int,
) -> None:
    await conn.execute(
        INSERT_REFRESH_TOKEN, token_hash, user_id, session_id, parent_id, float(ttl_s)
    )


async def lock_refresh_token(conn: asyncpg.Connection, token_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_REFRESH_TOKEN, token_hash)


async def mark_rotated(conn: asyncpg.Connection, token_id: uuid.UUID) -> None:
    await conn.execute(MARK_ROTATED, token_id)


async def record_attempt(
    conn: asyncpg.Connection,
    email: str,
    ip_address: str | None,
    succeeded: bool,
    kind: str = "sign_in",
) -> None:
    await conn.execute(INSERT_ATTEMPT, email, ip_address, succeeded, kind)


async def account_failures(
    conn: asyncpg.Connection, email: str, ip_address: str | None, window_s: int
) -> tuple[int, float, int, float]:
    """(failures from this ip, its retry-after, failures from anywhere, their retry-after)."""
    row = await conn.fetchrow(ACCOUNT_FAILURES, email, ip_address, float(window_s))
    assert row is not None
    return (
        int(row["pair_failures"]), float(row["pair_retry_after"] or 0),
        int(row["account_failures"]), float(row["account_retry_after"] or 0),
    )


async def known_ip(
    conn: asyncpg.Connection, email: str, ip_address: str, period_s: int
) -> bool:
    return bool(await conn.fetchval(KNOWN_IP, email, ip_address, float(period_s)))


async def ip_failures(
    conn: asyncpg.Connection, ip_address: str, window_s: int
) -> tuple[int, float]:
    row = await conn.fetchrow(IP_FAILURES, ip_address, float(window_s))
    assert row is not None
    return int(row["failures"]), float(row["retry_after"] or 0)


async def ip_sign_ups(
    conn: asyncpg.Connection, ip_address: str, window_s: int
) -> tuple[int, float]:
    row = await conn.fetchrow(IP_SIGN_UPS, ip_address, float(window_s))
    assert row is not None
    return int(row["sign_ups"]), float(row["retry_after"] or 0)

