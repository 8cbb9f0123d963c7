"""OAuth connections (tokens encrypted) and the authorization flows in progress.

Tokens are encrypted with the keyring (``persistence.crypto``), bound to the row id and
column; nothing here returns them to an API caller (``list_connections`` has no token
column). Functions take a connection: the OAuth code runs them as the service, because a
sign-in has no user yet and a token refresh has no request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from persistence.crypto import Keyring

PUBLIC_COLUMNS = """
provider, provider_user_id, scopes, token_expires_at, metadata, created_at, updated_at
"""
LIST_CONNECTIONS = f"""
select {PUBLIC_COLUMNS} from public.oauth_connections where user_id = $1 order by provider
"""
CONNECTION_COLUMNS = """
id, user_id, provider, provider_user_id, access_token, refresh_token, token_expires_at,
scopes, metadata
"""
SELECT_BY_IDENTITY = f"""
select {CONNECTION_COLUMNS} from public.oauth_connections
where provider = $1 and provider_user_id = $2
"""
SELECT_FOR_USER = f"""
select {CONNECTION_COLUMNS} from public.oauth_connections where user_id = $1 and provider = $2
"""
LOCK_FOR_USER = SELECT_FOR_USER + " for update"
INSERT_CONNECTION = """
insert into public.oauth_connections
  (id, user_id, provider, provider_user_id, access_token, refresh_token, token_expires_at,
   scopes, metadata)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
REPLACE_CONNECTION = """
update public.oauth_connections
set provider_user_id = $2, access_token = $3, refresh_token = $4, token_expires_at = $5,
    scopes = $6, metadata = $7
where id = $1
"""
UPDATE_TOKENS = """
update public.oauth_connections
set access_token = $2, refresh_token = $3, token_expires_at = $4, scopes = coalesce($5, scopes),
    metadata = metadata - 'status'
where id = $1
"""
MARK_REAUTH = """
update public.oauth_connections
set metadata = metadata || '{"status": "reauth_required"}'::jsonb where id = $1
"""
DELETE_CONNECTION = f"""
delete from public.oauth_connections where user_id = $1 and provider = $2
returning {CONNECTION_COLUMNS}
"""
DUE_FOR_REFRESH = """
select user_id, provider from public.oauth_connections
where refresh_token is not null and token_expires_at is not null
  and token_expires_at < now() + make_interval(secs => $1)
  and coalesce(metadata->>'status', '') <> 'reauth_required'
order by token_expires_at
limit $2
"""

INSERT_FLOW = """
insert into public.oauth_flows
  (id, state_hash, browser_hash, provider, purpose, user_id, code_verifier, nonce,
   redirect_uri, return_to, expires_at)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11))
"""
LOCK_FLOW = """
select id, browser_hash, provider, purpose, user_id, code_verifier, nonce, redirect_uri,
       return_to, consumed_at, expires_at <= now() as expired
from public.oauth_flows where state_hash = $1
for update
"""
CONSUME_FLOW = "update public.oauth_flows set consumed_at = now() where id = $1"
SET_GRANT = """
update public.oauth_flows
set grant_hash = $2, grant_user_id = $3, grant_expires_at = now() + make_interval(secs => $4)
where id = $1
"""
USE_GRANT = """
update public.oauth_flows set grant_used_at = now()
where grant_hash = $1 and browser_hash = $2 and grant_used_at is null
  and grant_expires_at > now()
returning grant_user_id
"""
PRUNE_FLOWS = """
delete from public.oauth_flows
where expires_at < now() - interval '1 hour'
  and (grant_expires_at is null or grant_expires_at < now() - interval '1 hour')
"""


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint answered, in our terms."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: list[str] | None


def token_context(connection_id: uuid.UUID, column: str) -> str:
    return f"oauth_connections.{column}:{connection_id}"


def flow_context(flow_id: uuid.UUID) -> str:
    return f"oauth_flows.code_verifier:{flow_id}"


def _encrypted(
    keyring: Keyring, connection_id: uuid.UUID, tokens: TokenSet
) -> tuple[str, str | None]:
    access = keyring.encrypt(tokens.access_token, token_context(connection_id, "access_token"))
    refresh = (
        keyring.encrypt(tokens.refresh_token, token_context(connection_id, "refresh_token"))
        if tokens.refresh_token else None
    )
    return access, refresh


async def list_connections(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_CONNECTIONS, user_id)]


async def by_identity(
    conn: asyncpg.Connection, provider: str, provider_user_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_BY_IDENTITY, provider, provider_user_id)


async def for_user(
    conn: asyncpg.Connection, user_id: uuid.UUID, provider: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_FOR_USER if lock else SELECT_FOR_USER, user_id, provider)


async def save_connection(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    user_id: uuid.UUID,
    provider: str,
    provider_user_id: str,
    tokens: TokenSet,
    metadata: dict[str, Any],
) -> uuid.UUID:
    """Insert the user's connection to ``provider`` or replace it (one per provider).

    Raises ``asyncpg.UniqueViolationError`` when the provider account is connected to
    another user.
    """
    existing = await for_user(conn, user_id, provider, lock=True)
    connection_id = existing["id"] if existing else uuid.uuid4()
    access, refresh = _encrypted(keyring, connection_id, tokens)
    if existing is None:
        await conn.execute(
            INSERT_CONNECTION, connection_id, user_id, provider, provider_user_id, access,
            refresh, tokens.expires_at, tokens.scopes, metadata,
        )
    else:
        await conn.execute(
            REPLACE_CONNECTION, connection_id, provider_user_id, access, refresh,
            tokens.expires_at, tokens.scopes, metadata,
        )
    return connection_id


async def update_tokens(
    conn: asyncpg.Connection, keyring: Keyring, connection_id: uuid.UUID, tokens: TokenSet
) -> None:
    access, refresh = _encrypted(keyring, connection_id, tokens)
    await conn.execute(
        UPDATE_TOKENS, connection_id, access, refresh, tokens.expires_at, tokens.scopes
    )


async def mark_reauth_required(conn: asyncpg.Connection, connection_id: uuid.UUID) -> None:
    await conn.execute(MARK_REAUTH, connection_id)


async def delete_connection(
    conn: asyncpg.Connection, user_id: uuid.UUID, provider: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(DELETE_CONNECTION, user_id, provider)


async def due_for_refresh(
    conn: asyncpg.Connection, within_s: float, limit: int
) -> list[tuple[uuid.UUID, str]]:
    rows = await conn.fetch(DUE_FOR_REFRESH, float(within_s), limit)
    return [(r["user_id"], r["provider"]) for r in rows]


async def insert_flow(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    state_hash: str,
    browser_hash: str,
    provider: str,
    purpose: str,
    user_id: uuid.UUID | None,
    code_verifier: str,
    nonce: str | None,
    redirect_uri: str,
    return_to: str | None,
    ttl_s: int,
) -> uuid.UUID:
    flow_id = uuid.uuid4()
    await conn.execute(
        INSERT_FLOW, flow_id, state_hash, browser_hash, provider, purpose, user_id,
        keyring.encrypt(code_verifier, flow_context(flow_id)), nonce, redirect_uri, return_to,
        float(ttl_s),
    )
    return flow_id


async def lock_flow(conn: asyncpg.Connection, state_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_FLOW, state_hash)


async def consume_flow(conn: asyncpg.Connection, flow_id: uuid.UUID) -> None:
    await conn.execute(CONSUME_FLOW, flow_id)


async def set_grant(
    conn: asyncpg.Connection,
    flow_id: uuid.UUID,
    grant_hash: str,
    user_id: uuid.UUID,
    ttl_s: int,
) -> None:
    await conn.execute(SET_GRANT, flow_id, grant_hash, user_id, float(ttl_s))


async def use_grant(
    conn: asyncpg.Connection, grant_hash: str, browser_hash: str
) -> uuid.UUID | None:
    user_id: uuid.UUID | None = await conn.fetchval(USE_GRANT, grant_hash, browser_hash)
    return user_id


async def prune_flows(conn: asyncpg.Connection) -> None:
    await conn.execute(PRUNE_FLOWS)
