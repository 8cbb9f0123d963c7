"""AI conversations: create per project, list mine, rename, archive; list messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from persistence import conversations as store
from server.api.guards import require_conversation, require_project
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import forbidden, not_found


class Conversation(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    context: dict[str, Any] | None
    is_archived: bool | None
    created_at: datetime | None
    updated_at: datetime | None


class Message(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    metadata: dict[str, Any] | None
    tokens_used: int | None
    model: str | None
    created_at: datetime | None


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=500)
    context: dict[str, Any] = Field(default_factory=dict)


class ConversationRename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500)


async def create_conversation(ctx: Ctx) -> dict[str, Any]:
    body: ConversationCreate = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    async with ctx.db.as_user(ctx.user_id) as conn:
        conversation_id = await store.insert_conversation(
            conn, project_id, ctx.user_uuid, body.title, body.context
        )
        row = await store.get_conversation(conn, conversation_id)
    assert row is not None
    return row


async def list_conversations(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "viewer")
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_my_conversations(
            conn, project_id, ctx.user_uuid, after, query.limit + 1
        )
    return page(rows, query.limit, "created_at")


async def _visible(ctx: Ctx, conversation_id: uuid.UUID) -> dict[str, Any]:
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_conversation(conn, conversation_id)
    if row is None:
        raise not_found("no such conversation")
    return row


async def get_conversation(ctx: Ctx) -> dict[str, Any]:
    conversation_id = ctx.uuid("conversation_id")
    await require_conversation(ctx, conversation_id, "viewer")
    return await _visible(ctx, conversation_id)


async def _change(ctx: Ctx, *, title: str | None, archived: bool | None) -> dict[str, Any]:
    conversation_id = ctx.uuid("conversation_id")
    access = await require_conversation(ctx, conversation_id, "member")
    current = await _visible(ctx, conversation_id)
    if current["user_id"] != ctx.user_uuid and not access.at_least("admin"):
        raise forbidden("only the author or an admin can change a conversation")
    async with ctx.db.as_user(ctx.user_id) as conn:
        if not await store.update_conversation(
            conn, conversation_id, title=title, archived=archived
        ):
            raise not_found("no such conversation")
        row = await store.get_conversation(conn, conversation_id)
    assert row is not None
    return row


async def rename_conversation(ctx: Ctx) -> dict[str, Any]:
    body: ConversationRename = ctx.body
    return await _change(ctx, title=body.title, archived=None)


async def archive_conversation(ctx: Ctx) -> dict[str, Any]:
    return await _change(ctx, title=None, archived=True)


async def list_messages(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    conversation_id = ctx.uuid("conversation_id")
    await require_conversation(ctx, conversation_id, "viewer")
    after = decode_cursor(query.cursor, datetime) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_messages(conn, conversation_id, after, query.limit + 1)
    return page(rows, query.limit, "created_at")


ENDPOINTS = [
    Endpoint("POST", "/projects/{project_id}/conversations", create_conversation,
             "Start a conversation in a project (member or higher)", "conversations",
             body=ConversationCreate, body_required=False, response=Conversation, status=201,
             errors=(403,)),
    Endpoint("GET", "/projects/{project_id}/conversations", list_conversations,
             "My conversations in a project, not archived, newest first", "conversations",
             query=PageQuery, response=Conversation, paged=True),
    Endpoint("GET", "/conversations/{conversation_id}", get_conversation,
             "One conversation", "conversations", response=Conversation),
    Endpoint("PATCH", "/conversations/{conversation_id}", rename_conversation,
             "Rename a conversation (author or admin)", "conversations",
             body=ConversationRename, response=Conversation, errors=(403,)),
    Endpoint("POST", "/conversations/{conversation_id}/archive", archive_conversation,
             "Archive a conversation (author or admin)", "conversations",
             response=Conversation, errors=(403,)),
    Endpoint("GET", "/conversations/{conversation_id}/messages", list_messages,
             "Messages of a conversation, oldest first", "conversations", query=PageQuery,
             response=Message, paged=True),
]
