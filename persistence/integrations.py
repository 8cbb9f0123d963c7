"""Workspace API keys (``api_integrations``): stored encrypted, never read back by the API.

One key per workspace and provider (0122). The key is encrypted with the keyring, bound to
its row id; ``workspace_key`` decrypts it for the code that calls the provider (the chat,
Firecrawl, later deployments) and ``touch`` keeps ``last_used_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from persistence.crypto import DecryptionError, Keyring

PROVIDERS = ("github", "firecrawl", "openai", "anthropic", "vercel")

PUBLIC_COLUMNS = """
id, workspace_id, user_id, provider, config, is_active, last_used_at, created_at, updated_at
"""
LIST_WORKSPACE = f"""
select {PUBLIC_COLUMNS} from public.api_integrations
where workspace_id = $1 order by provider
"""
LOCK_WORKSPACE_ROW = """
select id from public.api_integrations where workspace_id = $1 and provider = $2 for update
"""
INSERT_INTEGRATION = f"""
insert into public.api_integrations
  (id, user_id, workspace_id, provider, api_key_encrypted, config, is_active)
values ($1, $2, $3, $4, $5, $6, true)
returning {PUBLIC_COLUMNS}
"""
UPDATE_INTEGRATION = f"""
update public.api_integrations
set user_id = $2, api_key_encrypted = $3, config = $4, is_active = true, last_used_at = null
where id = $1
returning {PUBLIC_COLUMNS}
"""
DELETE_INTEGRATION = """
delete from public.api_integrations where workspace_id = $1 and provider = $2 returning id
"""
# Providers in the caller's order of preference: the first active one wins.
ACTIVE_KEY = """
select id, provider, api_key_encrypted, config
from public.api_integrations
where workspace_id = $1 and provider = any($2::text[]) and is_active
  and api_key_encrypted is not null
order by array_position($2::text[], provider)
limit 1
"""
# At most one write a minute per key: a busy chat would otherwise update the row per reply.
TOUCH = """
update public.api_integrations set last_used_at = now()
where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')
"""


@dataclass(frozen=True)
class WorkspaceKey:
    id: uuid.UUID
    provider: str
    api_key: str
    config: dict[str, Any]


def context(integration_id: uuid.UUID) -> str:
    return f"api_integrations.api_key_encrypted:{integration_id}"


async def list_workspace(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_WORKSPACE, workspace_id)]


async def save_workspace_key(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    provider: str,
    api_key: str,
    config: dict[str, Any],
) -> dict[str, Any]:
    """Insert or replace the workspace's key for ``provider`` (call inside a transaction)."""
    existing = await conn.fetchval(LOCK_WORKSPACE_ROW, workspace_id, provider)
    if existing is None:
        new_id = uuid.uuid4()
        row = await conn.fetchrow(
            INSERT_INTEGRATION, new_id, user_id, workspace_id, provider,
            keyring.encrypt(api_key, context(new_id)), config,
        )
    else:
        row = await conn.fetchrow(
            UPDATE_INTEGRATION, existing, user_id, keyring.encrypt(api_key, context(existing)),
            config,
        )
    assert row is not None
    return dict(row)


async def delete_workspace_key(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, provider: str
) -> bool:
    return await conn.fetchval(DELETE_INTEGRATION, workspace_id, provider) is not None


async def workspace_key(
    conn: asyncpg.Connection,
    keyring: Keyring,
    workspace_id: uuid.UUID,
    providers: Sequence[str],
) -> WorkspaceKey | None:
    """The workspace's active key for the first of ``providers`` it has, decrypted."""
    row = await conn.fetchrow(ACTIVE_KEY, workspace_id, list(providers))
    if row is None:
        return None
    try:
        api_key = keyring.decrypt(row["api_key_encrypted"], context(row["id"]))
    except DecryptionError:
        return None
    return WorkspaceKey(row["id"], row["provider"], api_key, dict(row["config"] or {}))


async def touch(conn: asyncpg.Connection, integration_id: uuid.UUID) -> None:
    await conn.execute(TOUCH, integration_id)
