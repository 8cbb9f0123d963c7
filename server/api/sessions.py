"""The signed-in user's sign-in sessions: list, revoke (which revokes the refresh tokens)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from persistence import accounts
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import not_found


class Session(BaseModel):
    id: uuid.UUID
    ip_address: str | None
    user_agent: str | None
    device_type: str | None
    browser: str | None
    os: str | None
    country: str | None
    last_activity_at: datetime | None
    created_at: datetime | None
    current: bool


async def list_sessions(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await accounts.list_sessions(conn, ctx.user_uuid, after, query.limit + 1)
    current = ctx.principal.claims.get("session_id") if ctx.principal else None
    for row in rows:
        row["current"] = str(row["id"]) == current
    return page(rows, query.limit, "last_activity_at")


async def revoke_session(ctx: Ctx) -> None:
    async with ctx.db.service() as conn:
        revoked = await accounts.revoke_session(conn, ctx.uuid("session_id"), ctx.user_uuid)
    if not revoked:
        raise not_found("no such session")


ENDPOINTS = [
    Endpoint("GET", "/me/sessions", list_sessions, "My active sign-in sessions", "me",
             query=PageQuery, response=Session, paged=True),
    Endpoint("DELETE", "/me/sessions/{session_id}", revoke_session,
             "Revoke one of my sessions (and its refresh tokens)", "me", status=204),
]
