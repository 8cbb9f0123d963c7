"""``POST /api/v1/files/{file_id}/save``: checkpoint the live document as a file version.

The text saved is what collaborators see right now (the documents hub's live CRDT text,
persisted to ``files.content`` first), with the caller as ``changed_by``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from collab.hub import DocumentHub
from collab.store import FileGone
from server.api.guards import require_file
from server.api.routing import Ctx, Endpoint
from server.api.versions import Version
from server.errors import ApiError, conflict, not_found


class SaveRequest(BaseModel):
    change_message: str | None = Field(default=None, max_length=2000)


async def save_file(ctx: Ctx) -> dict[str, Any]:
    body: SaveRequest = ctx.body
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    if access.is_folder:
        raise ApiError(422, "not_a_file", "a folder has no versions")
    if access.is_deleted:
        raise conflict("the file is deleted; restore it first", "file_deleted")
    hub: DocumentHub | None = ctx.services.documents
    if hub is None:
        raise ApiError(503, "unavailable", "the document service is not running")
    try:
        return await hub.save_version(file_id, ctx.user_uuid, body.change_message)
    except FileGone:
        raise not_found("no such file") from None


ENDPOINTS = [
    Endpoint("POST", "/files/{file_id}/save", save_file,
             "Save the live text as a new version (member or higher)", "versions",
             body=SaveRequest, body_required=False, response=Version, status=201,
             errors=(403, 409)),
]
