"""A workspace's API keys: list (never the key), set (checked with the provider first), remove.

Admins and owners manage them (0122): a workspace key pays for, and sees, every member's
chat. The key is encrypted before it reaches the database and is never returned.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from persistence import integrations as store
from server.api.guards import require_workspace
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, not_found
from server.integrations.checks import CheckUnavailable, KeyRejected, check_key


class Integration(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID | None
    user_id: uuid.UUID
    provider: str
    config: dict[str, Any] | None
    is_active: bool | None
    last_used_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class IntegrationList(BaseModel):
    items: list[Integration]
    providers: list[str]


class IntegrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # openai/anthropic: the chat model to use with this key.
    model: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[\w.:/-]+$")
    # vercel: the team the token deploys to.
    team_id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[\w-]+$")


class IntegrationSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")
    config: IntegrationConfig = Field(default_factory=lambda: IntegrationConfig.model_validate({}))


def _provider(ctx: Ctx) -> str:
    name = ctx.name("provider")
    if name not in store.PROVIDERS:
        raise not_found(f"no integration named {name!r} (one of {', '.join(store.PROVIDERS)})")
    return name


async def list_integrations(ctx: Ctx) -> dict[str, Any]:
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "admin")
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_workspace(conn, workspace_id)
    return {"items": rows, "providers": list(store.PROVIDERS)}


async def set_integration(ctx: Ctx) -> dict[str, Any]:
    body: IntegrationSet = ctx.body
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "admin")
    provider = _provider(ctx)
    try:
        await check_key(ctx.services.settings.integrations, provider, body.api_key)
    except KeyRejected as exc:
        raise ApiError(422, "invalid_api_key", str(exc)) from None
    except CheckUnavailable as exc:
        raise ApiError(502, "provider_unavailable",
                       f"the key could not be checked, nothing was saved: {exc}") from None
    config = body.config.model_dump(exclude_none=True)
    async with ctx.db.as_user(ctx.user_id) as conn:
        return await store.save_workspace_key(
            conn, ctx.services.keyring, workspace_id=workspace_id, user_id=ctx.user_uuid,
            provider=provider, api_key=body.api_key, config=config,
        )


async def delete_integration(ctx: Ctx) -> None:
    workspace_id = ctx.uuid("workspace_id")
    await require_workspace(ctx, workspace_id, "admin")
    provider = _provider(ctx)
    async with ctx.db.as_user(ctx.user_id) as conn:
        if not await store.delete_workspace_key(conn, workspace_id, provider):
            raise not_found(f"this workspace has no {provider} key")


PATH = "/workspaces/{workspace_id}/integrations"
ENDPOINTS = [
    Endpoint("GET", PATH, list_integrations,
             "The workspace's API keys (admin or owner; the keys themselves never)",
             "integrations", response=IntegrationList, errors=(403,)),
    Endpoint("PUT", PATH + "/{provider}", set_integration,
             "Set the workspace's key for a provider, checked with the provider first",
             "integrations", body=IntegrationSet, response=Integration,
             errors=(403, 404, 422, 502)),
    Endpoint("DELETE", PATH + "/{provider}", delete_integration,
             "Remove the workspace's key for a provider", "integrations", status=204,
             errors=(403, 404)),
]
