"""File versions: list, read, restore (a restore is itself a new version)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from persistence import files as store
from server.api.files import publish
from server.api.guards import require_file
from server.api.pagination import PageQuery, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, conflict, not_found


class Version(BaseModel):
    id: uuid.UUID
    file_id: uuid.UUID
    version_number: int
    size_bytes: int | None
    changed_by: uuid.UUID | None
    change_message: str | None
    created_at: datetime | None


class VersionWithContent(Version):
    content: str


async def list_versions(ctx: Ctx) -> dict[str, Any]:
    query: PageQuery = ctx.query
    file_id = ctx.uuid("file_id")
    await require_file(ctx, file_id, "viewer")
    after = decode_cursor(query.cursor, int) if query.cursor else None
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_versions(conn, file_id, after, query.limit + 1)
    return page(rows, query.limit, "version_number")


async def get_version(ctx: Ctx) -> dict[str, Any]:
    file_id = ctx.uuid("file_id")
    await require_file(ctx, file_id, "viewer")
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_version(conn, file_id, ctx.params["version_number"])
    if row is None:
        raise not_found("no such version")
    return row


async def restore_version(ctx: Ctx) -> dict[str, Any]:
    file_id = ctx.uuid("file_id")
    number: int = ctx.params["version_number"]
    access = await require_file(ctx, file_id, "member")
    if access.is_folder:
        raise ApiError(422, "not_a_file", "a folder has no versions")
    hub = ctx.services.documents
    async with ctx.db.as_user(ctx.user_id) as conn:
        node = await store.lock_file(conn, file_id)
        if node is None:
            raise not_found("no such file")
        if node["is_deleted"]:
            raise conflict("the file is deleted; restore it first", "file_deleted")
        old = await store.get_version(conn, file_id, number)
        if old is None:
            raise not_found("no such version")
        created = await store.insert_next_version(
            conn, file_id, old["content"], ctx.user_uuid, f"Restored version {number}"
        )
        if hub is None:
            await store.write_content(conn, file_id, old["content"], ctx.user_uuid)
    if hub is not None:
        await hub.write_text(file_id, old["content"], ctx.user_uuid)
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_file(conn, file_id)
    if row is not None and access.project_id is not None:
        await publish(ctx, access.project_id, "file.updated", row)
    return created


ENDPOINTS = [
    Endpoint("GET", "/files/{file_id}/versions", list_versions,
             "A file's versions, newest first", "versions", query=PageQuery,
             response=Version, paged=True),
    Endpoint("GET", "/files/{file_id}/versions/{version_number}", get_version,
             "One version with its content", "versions", response=VersionWithContent),
    Endpoint("POST", "/files/{file_id}/versions/{version_number}/restore", restore_version,
             "Restore a version (writes a new version)", "versions", response=Version,
             status=201, errors=(403, 409)),
]
