"""The project file tree: list, create, read, rename/move, upload, soft delete, restore.

Content writes go through the documents hub when it is registered (so open editors see
them); tree changes are published on the projects hub as ``file.*`` events.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from billing import limits as billing_limits
from persistence import files as store
from server.api import paths
from server.api.filetypes import language_of, mime_type_of
from server.api.guards import list_project_files, read_file, require_file, require_project
from server.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, conflict, not_found
from sockets.close_codes import NOT_FOUND


class FileEntry(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    path: str
    name: str
    type: str
    size_bytes: int | None
    mime_type: str | None
    language: str | None
    parent_id: uuid.UUID | None
    # Set for a binary or large file: its bytes are the object under this key
    # (GET /files/{id}/download); it has no text and is never a CRDT document.
    storage_path: str | None = None
    is_deleted: bool | None
    created_by: uuid.UUID | None
    updated_by: uuid.UUID | None
    created_at: datetime | None
    updated_at: datetime | None


class FileWithContent(FileEntry):
    content: str | None


class FileListQuery(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=2048)
    include_deleted: bool = False


class FileCreate(BaseModel):
    """Either ``path`` (its parent folder must exist) or ``name`` with ``parent_id``."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, min_length=1, max_length=paths.MAX_PATH + 2)
    name: str | None = Field(None, min_length=1, max_length=paths.MAX_NAME)
    parent_id: uuid.UUID | None = None
    type: Literal["file", "folder"] = "file"
    content: str | None = None


class FileMove(BaseModel):
    """Rename (``name``) and/or move (``parent_id``; null moves to the project root)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=paths.MAX_NAME)
    parent_id: uuid.UUID | None = None


class FileContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str


def _file_gone() -> ApiError:
    return conflict("the file is deleted; restore it first", "file_deleted")


async def publish(
    ctx: Ctx, project_id: uuid.UUID, kind: str, row: dict[str, Any], **extra: Any
) -> None:
    hub = ctx.services.projects
    if hub is not None:
        file = FileEntry.model_validate(row).model_dump(mode="json")
        event = {"type": kind, "file": file, **to_jsonable_python(extra)}
        await hub.publish(project_id, event)


async def _parent_folder(
    conn: Any, project_id: uuid.UUID, parent_id: uuid.UUID | None, parent_path: str | None
) -> dict[str, Any] | None:
    """The live folder a new or moved entry goes into (None: the root), or 404/422."""
    if parent_id is not None:
        parent = await store.get_file(conn, parent_id)
        if parent is None or parent["project_id"] != project_id:
            raise not_found("no such parent folder", "parent_not_found")
    elif parent_path is not None:
        parent = await store.by_path(conn, project_id, parent_path)
        if parent is None:
            raise not_found(f"no folder at {parent_path!r}", "parent_not_found")
    else:
        return None
    if parent["is_deleted"]:
        raise not_found("the parent folder is deleted", "parent_not_found")
    if parent["type"] != "folder":
        raise ApiError(422, "parent_not_folder", "the parent is not a folder")
    return parent


async def _claim_path(conn: Any, project_id: uuid.UUID, path: str) -> None:
    existing = await store.by_path(conn, project_id, path)
    if existing is None:
        return
    if not existing["is_deleted"]:
        raise conflict(f"{path!r} already exists", "path_taken")
    await store.purge_deleted_at(conn, project_id, path)


async def list_files(ctx: Ctx) -> dict[str, Any]:
    query: FileListQuery = ctx.query
    project_id = ctx.uuid("project_id")
    after = decode_cursor(query.cursor, str) if query.cursor else None
    rows = await list_project_files(ctx, project_id, query.include_deleted, after,
                                    query.limit + 1)
    return page(rows, query.limit, "path")


async def create_file(ctx: Ctx) -> dict[str, Any]:
    body: FileCreate = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    if (body.path is None) == (body.name is None):
        raise ApiError(422, "validation_error", "give either path or name (with parent_id)")
    if body.path is not None and body.parent_id is not None:
        raise ApiError(422, "validation_error", "parent_id goes with name, not with path")
    if body.type == "folder" and body.content is not None:
        raise ApiError(422, "validation_error", "a folder has no content")
    if body.path is not None:
        path = paths.normalise_path(body.path)
        parent_path, name = paths.split(path)
    else:
        assert body.name is not None
        name, parent_path = paths.check_name(body.name), None
    async with ctx.db.as_user(ctx.user_id) as conn:
        parent = await _parent_folder(conn, project_id, body.parent_id, parent_path)
        if body.path is None:
            path = paths.join(parent["path"] if parent else None, name)
        await _claim_path(conn, project_id, path)
        is_file = body.type == "file"
        if is_file and body.content:
            # The payer's storage, held until this insert commits.
            await billing_limits.take_for_project(
                conn, project_id, "storage_bytes", len(body.content.encode()))
        file_id = await store.insert_file(
            conn,
            project_id,
            path=path,
            name=name,
            type=body.type,
            content=(body.content or "") if is_file else None,
            mime_type=mime_type_of(name) if is_file else None,
            language=language_of(name) if is_file else None,
            parent_id=parent["id"] if parent else None,
            user_id=ctx.user_uuid,
        )
        row = await store.get_file(conn, file_id)
    assert row is not None
    await publish(ctx, project_id, "file.created", row)
    return row


async def get_file(ctx: Ctx) -> dict[str, Any]:
    file_id = ctx.uuid("file_id")
    access, row = await read_file(ctx, file_id, "viewer")
    if row is None:
        raise not_found("no such file")
    hub = ctx.services.documents
    stored = row["storage_path"] is not None
    if hub is not None and row["type"] == "file" and not row["is_deleted"] and not stored:
        # A loaded room has the newest text; else files.content is current unless log rows
        # wait for a compaction (loading and merging the document costs four statements).
        live = hub.live_text(file_id)
        if live is None and access.has_unmerged_log:
            live = await hub.read_text(file_id)
        if live is not None:
            row["content"] = live
            row["size_bytes"] = len(live.encode())
    return row


async def move_file(ctx: Ctx) -> dict[str, Any]:
    body: FileMove = ctx.body
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    moving = "parent_id" in body.model_fields_set
    async with ctx.db.as_user(ctx.user_id) as conn:
        node = await store.lock_file(conn, file_id)
        if node is None:
            raise not_found("no such file")
        if node["is_deleted"]:
            raise _file_gone()
        name = paths.check_name(body.name) if body.name is not None else node["name"]
        if moving:
            parent = await _parent_folder(conn, node["project_id"], body.parent_id, None)
            if parent is not None and paths.is_within(parent["path"], node["path"]):
                raise ApiError(422, "invalid_move", "cannot move a folder into itself")
            parent_path = parent["path"] if parent else None
            parent_id = parent["id"] if parent else None
        else:
            parent_path, _ = paths.split(node["path"])
            parent_id = node["parent_id"]
        new_path = paths.join(parent_path, name)
        if new_path == node["path"]:
            return node
        await _claim_path(conn, node["project_id"], new_path)
        is_file = node["type"] == "file"
        await store.move(
            conn,
            node,
            new_path=new_path,
            new_name=name,
            new_parent_id=parent_id,
            language=language_of(name) if is_file else None,
            mime_type=mime_type_of(name) if is_file else None,
            user_id=ctx.user_uuid,
        )
        row = await store.get_file(conn, file_id)
    assert row is not None and access.project_id is not None
    kind = "file.moved" if parent_id != node["parent_id"] else "file.renamed"
    await publish(ctx, access.project_id, kind, row, old_path=node["path"])
    return row


async def upload_content(ctx: Ctx) -> dict[str, Any]:
    body: FileContent = ctx.body
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    if access.is_folder:
        raise ApiError(422, "not_a_file", "a folder has no content")
    if access.is_deleted:
        raise _file_gone()
    hub = ctx.services.documents
    if access.is_stored:
        if len(body.content.encode()) > ctx.services.settings.storage.max_text_bytes:
            raise ApiError(413, "payload_too_large", "too large for a text document: upload it")
        async with ctx.db.as_user(ctx.user_id) as conn:
            node = await store.get_file(conn, file_id)
        await become_text(ctx, file_id, body.content, node["mime_type"] if node else None)
    elif hub is not None:
        await hub.write_text(file_id, body.content, ctx.user_uuid)
    else:
        async with ctx.db.as_user(ctx.user_id) as conn:
            await store.write_content(conn, file_id, body.content, ctx.user_uuid)
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_file(conn, file_id)
    if row is None:
        raise not_found("no such file")
    assert access.project_id is not None
    await publish(ctx, access.project_id, "file.updated", row)
    return row


async def become_text(
    ctx: Ctx, file_id: uuid.UUID, text: str, mime_type: str | None
) -> None:
    """A stored object becomes a document with ``text`` (the caller checked the role)."""
    async with ctx.db.service() as conn:
        await store.set_text_from_object(conn, file_id, text, mime_type, ctx.user_uuid)
    hub = ctx.services.documents
    if hub is not None and hub.live_text(file_id) is not None:
        # A room of the document it was before may still be loaded (it unloads when idle):
        # bring it to the new text, or it would be served and compacted with the old one.
        await hub.write_text(file_id, text, ctx.user_uuid)


async def _set_deleted(ctx: Ctx, deleted: bool) -> dict[str, Any]:
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    async with ctx.db.as_user(ctx.user_id) as conn:
        node = await store.lock_file(conn, file_id)
        if node is None:
            raise not_found("no such file")
        if node["is_deleted"] == deleted:
            return node
        if not deleted and node["parent_id"] is not None:
            parent = await store.get_file(conn, node["parent_id"])
            if parent is None or parent["is_deleted"]:
                raise conflict("restore the parent folder first", "parent_deleted")
        changed = await store.set_deleted(conn, node, deleted, ctx.user_uuid)
        row = await store.get_file(conn, file_id)
    assert row is not None and access.project_id is not None
    hub = ctx.services.documents
    if deleted and hub is not None:
        for changed_id in changed:
            await hub.close_file(changed_id, NOT_FOUND, "file deleted")
    await publish(ctx, access.project_id, "file.deleted" if deleted else "file.restored", row)
    return row


async def delete_file(ctx: Ctx) -> None:
    await _set_deleted(ctx, True)


async def restore_file(ctx: Ctx) -> dict[str, Any]:
    return await _set_deleted(ctx, False)


ENDPOINTS = [
    Endpoint("GET", "/projects/{project_id}/files", list_files,
             "The project's files and folders, by path", "files", query=FileListQuery,
             response=FileEntry, paged=True),
    Endpoint("POST", "/projects/{project_id}/files", create_file,
             "Create a file or folder (member or higher)", "files", body=FileCreate,
             response=FileEntry, status=201, errors=(403, 409)),
    Endpoint("GET", "/files/{file_id}", get_file, "A file's metadata and content", "files",
             response=FileWithContent),
    Endpoint("PATCH", "/files/{file_id}", move_file,
             "Rename and/or move a file or folder (descendants follow)", "files",
             body=FileMove, response=FileEntry, errors=(403, 409)),
    Endpoint("PUT", "/files/{file_id}/content", upload_content, "Replace a file's text",
             "files", body=FileContent, response=FileEntry, errors=(403, 409)),
    Endpoint("DELETE", "/files/{file_id}", delete_file,
             "Soft-delete a file or folder (and its descendants)", "files", status=204,
             errors=(403,)),
    Endpoint("POST", "/files/{file_id}/restore", restore_file,
             "Restore a soft-deleted file or folder (and its descendants)", "files",
             response=FileEntry, errors=(403, 409)),
]
