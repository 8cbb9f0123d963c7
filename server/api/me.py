"""The signed-in user's profile: read and update (under RLS, as the user)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from persistence import accounts
from server.api.routing import Ctx, Endpoint
from server.errors import not_found

USERNAME = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,38})$"
URL = r"^https?://[^\s]+$"


class Profile(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str | None
    avatar_url: str | None
    bio: str | None
    github_username: str | None
    twitter_username: str | None
    website_url: str | None
    preferences: dict[str, Any] | None
    created_at: datetime | None
    updated_at: datetime | None


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: str | None = Field(None, max_length=200)
    avatar_url: str | None = Field(None, max_length=2048, pattern=URL)
    bio: str | None = Field(None, max_length=5000)
    github_username: str | None = Field(None, pattern=USERNAME)
    twitter_username: str | None = Field(None, pattern=USERNAME)
    website_url: str | None = Field(None, max_length=2048, pattern=URL)
    preferences: dict[str, Any] | None = None


async def get_me(ctx: Ctx) -> dict[str, Any]:
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await accounts.profile(conn, ctx.user_uuid)
    if row is None:
        raise not_found("no profile for this user")
    return row


async def update_me(ctx: Ctx) -> dict[str, Any]:
    body: ProfileUpdate = ctx.body
    changes = body.model_dump(exclude_unset=True)
    if changes.get("preferences") is None and "preferences" in changes:
        changes["preferences"] = {}
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await accounts.update_profile(conn, ctx.user_uuid, changes)
    if row is None:
        raise not_found("no profile for this user")
    return row


ENDPOINTS = [
    Endpoint("GET", "/me", get_me, "The signed-in user's profile", "me", response=Profile),
    Endpoint("PATCH", "/me", update_me, "Update the signed-in user's profile", "me",
             body=ProfileUpdate, response=Profile),
]
