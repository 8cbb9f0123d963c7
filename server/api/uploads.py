"""Files as bytes: upload (streamed, size-limited) and download.

``POST /projects/{project_id}/uploads?path=...`` takes the raw body as the file's bytes:
small UTF-8 text becomes (or updates, as a diff through the documents hub) a document;
binary or large content becomes a content-addressed object (``files.storage_path``) that
is never loaded into a CRDT. Missing parent folders are created. The body is streamed to
the store and refused with 413 past ``MAX_UPLOAD_BYTES``; its own route, outside the API's
JSON body cap (``uploads_route``), reads it.

``GET /files/{file_id}/download`` streams a file's bytes: the object, or the live text.
It is always an attachment, ``nosniff`` and sandboxed: uploaded HTML must never run on the
IDE's origin.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from billing import limits as billing_limits
from persistence import files as store
from server.api import paths
from server.api.files import FileEntry, become_text, publish
from server.api.filetypes import language_of, mime_type_of
from server.api.guards import require_file, require_project
from server.api.routing import Ctx, Endpoint, to_routes
from server.errors import ApiError, conflict, not_found
from server.middleware import browser_guards
from sockets.close_codes import NOT_A_DOCUMENT
from storage.ingest import Received, receive
from storage.objects import ObjectMissing, ObjectStore, TooLarge

UPLOAD_PATH = "/projects/{project_id}/uploads"
API_PREFIX = "/api/v1"


class UploadQuery(BaseModel):
    path: str = Field(min_length=1, max_length=paths.MAX_PATH + 2)


def _objects(ctx: Ctx) -> ObjectStore:
    if ctx.services.objects is None:
        raise ApiError(503, "storage_unavailable", "file storage is not configured")
    return ctx.services.objects


async def upload_file(ctx: Ctx) -> Response:
    query: UploadQuery = ctx.query
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    path = paths.normalise_path(query.path)
    parent_path, name = paths.split(path)
    config = ctx.services.settings.storage
    try:
        received = await receive(
            ctx.request.stream(), _objects(ctx), max_bytes=config.max_upload_bytes,
            max_text_bytes=config.max_text_bytes,
        )
    except TooLarge as exc:
        raise ApiError(413, "payload_too_large",
                       f"a file is at most {exc.limit} bytes") from None
    row, created, folders = await _put(ctx, project_id, path, parent_path, name, received)
    for folder in folders:
        await publish(ctx, project_id, "file.created", folder)
    await publish(ctx, project_id, "file.created" if created else "file.updated", row)
    body = FileEntry.model_validate(row).model_dump_json()
    return Response(body, 201 if created else 200, media_type="application/json")


async def _put(
    ctx: Ctx, project_id: uuid.UUID, path: str, parent_path: str | None, name: str,
    received: Received,
) -> tuple[dict[str, Any], bool, list[dict[str, Any]]]:
    """Create or update the file at ``path``: (row, created, folders created)."""
    user = ctx.user_uuid
    mime = mime_type_of(name)
    folders: list[dict[str, Any]] = []
    async with ctx.db.as_user(ctx.user_id) as conn:
        try:
            parent_id = await store.ensure_folders(conn, project_id, parent_path, user, folders)
        except store.PathBlocked as exc:
            raise ApiError(422, "parent_not_folder", f"{exc.path!r} is a file") from None
        existing = await store.by_path(conn, project_id, path)
        if existing is not None and existing["type"] == "folder" and not existing["is_deleted"]:
            raise conflict(f"{path!r} is a folder", "path_taken")
        if existing is not None and existing["is_deleted"]:
            await store.purge_deleted_at(conn, project_id, path)
            existing = None
        if existing is None:
            stored = received.stored
            size = stored.size if stored else len((received.text or "").encode())
            # The payer's storage, held until this insert commits.
            await billing_limits.take_for_project(conn, project_id, "storage_bytes", size)
            file_id = await store.insert_file(
                conn, project_id, path=path, name=name, type="file", content=received.text,
                mime_type=mime, language=language_of(name) if stored is None else None,
                parent_id=parent_id, user_id=user,
                storage_path=stored.key if stored else None,
                size_bytes=stored.size if stored else None,
            )
            row = await store.get_file(conn, file_id)
            assert row is not None
            return row, True, folders
    file_id = existing["id"]
    hub = ctx.services.documents
    if received.stored is not None:
        # The CRDT tables are the hub's (service-only): written as the service, after the
        # member check above.
        async with ctx.db.service() as conn:
            growth = received.stored.size - (existing["size_bytes"] or 0)
            if growth > 0:
                await billing_limits.take_for_project(conn, project_id, "storage_bytes", growth)
            await store.set_stored_object(
                conn, file_id, received.stored.key, received.stored.size, mime, user
            )
        if hub is not None:
            await hub.close_file(file_id, NOT_A_DOCUMENT, "the file is now binary")
    elif existing["storage_path"] is not None:
        await become_text(ctx, file_id, received.text or "", mime)
    elif hub is not None:
        await hub.write_text(file_id, received.text or "", user)
    else:
        async with ctx.db.as_user(ctx.user_id) as conn:
            await store.write_content(conn, file_id, received.text or "", user)
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_file(conn, file_id)
    if row is None:
        raise not_found("no such file")
    return row, False, folders


def _attachment(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def download_file(ctx: Ctx) -> Response:
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "viewer")
    if access.is_folder:
        raise ApiError(422, "not_a_file", "a folder has no content")
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_file(conn, file_id, content=True)
    if row is None or row["is_deleted"]:
        raise not_found("no such file")
    headers = {
        "Content-Disposition": _attachment(row["name"]),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-cache",
    }
    media_type = row["mime_type"] or "application/octet-stream"
    if row["storage_path"] is not None:
        try:
            reader = await _objects(ctx).open(row["storage_path"])
        except ObjectMissing:
            raise not_found("the file's bytes are missing", "object_missing") from None
        headers["Content-Length"] = str(reader.size)
        headers["ETag"] = f'"{row["storage_path"].rsplit("/", 1)[-1]}"'
        return StreamingResponse(reader.chunks(), media_type=media_type, headers=headers)
    hub = ctx.services.documents
    text = await hub.read_text(file_id) if hub is not None else None
    data = (text if text is not None else row["content"] or "").encode()
    return Response(data, media_type=media_type, headers=headers)


UPLOAD = Endpoint(
    "POST", UPLOAD_PATH, upload_file,
    "Upload a file's bytes to a path (text becomes a document, the rest a stored object)",
    "files", query=UploadQuery, response=FileEntry, status=201, errors=(403, 409),
    raw_body="application/octet-stream", own_route=True,
    body_required=False,  # no body: an empty file
)
ENDPOINTS = [
    UPLOAD,
    Endpoint("GET", "/files/{file_id}/download", download_file,
             "A file's bytes, as an attachment", "files", errors=(403,),
             raw_response="application/octet-stream"),
]


class UploadsApp:
    """The upload endpoint behind the browser guards, with the upload size as body cap."""

    def __init__(self) -> None:
        full = dataclasses.replace(UPLOAD, path=API_PREFIX + UPLOAD_PATH)
        self.router = Router(routes=to_routes([full]))
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            settings = scope["app"].state.settings
            self._app = browser_guards(self.router, settings, settings.storage.max_upload_bytes)
        await self._app(scope, receive, send)


def uploads_route() -> Route:
    """Mounted before ``/api/v1``: the API's own body cap would refuse large files. POST
    only: other methods (CORS preflights included) fall through to the API mount."""
    return Route(API_PREFIX + UPLOAD_PATH, UploadsApp(), methods=["POST"])
