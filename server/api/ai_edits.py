"""AI edits of a file: start one (from an instruction, or a chat answer applied to the file),
cancel it (keep or roll back what was written), read its record.

Progress and the result come on the project channel (``ai_edit.started``,
``ai_edit.progress``, ``ai_edit.finished``) and the text itself through the document's
own socket, as a peer's edits do. ``ai/edits.py`` says how it runs.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_jsonable_python
from starlette.responses import JSONResponse

from ai.edits import AIEdits, EditError
from persistence import ai_jobs as store
from persistence import files as file_store
from server.api.guards import require_file, require_project
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, not_found

STATUS = {"busy": 409, "quota_exceeded": 402, "ai_unavailable": 503, "ai_installing": 503}
CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: int = Field(ge=0, alias="from", description="offset in UTF-16 units (as the editor)")
    end: int = Field(ge=0, alias="to")


class EditCreate(BaseModel):
    """An ``instruction`` for the model, or ``message_id``: a chat answer whose first code
    block (or whole text) is written into the range. No selection: the whole file."""

    model_config = ConfigDict(extra="forbid")
    instruction: str | None = Field(None, min_length=1, max_length=8000)
    message_id: uuid.UUID | None = None
    selection: Selection | None = None

    @model_validator(mode="after")
    def one_source(self) -> EditCreate:
        if (self.instruction is None) == (self.message_id is None):
            raise ValueError("give either instruction or message_id")
        return self


class EditCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: bool = Field(False, description="keep what was written (else roll it back)")


class EditAnswer(BaseModel):
    edit: dict[str, Any]


def _service(ctx: Ctx) -> AIEdits:
    edits: AIEdits | None = ctx.services.ai_edits
    if edits is None:
        raise ApiError(503, "ai_unavailable", "AI edits are not available")
    return edits


def answer_code(content: str) -> str:
    found = CODE_BLOCK.search(content)
    return found.group(1) if found else content


async def create_edit(ctx: Ctx) -> JSONResponse:
    body: EditCreate = ctx.body
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    if access.is_folder or access.is_deleted:
        raise ApiError(422, "not_a_file", "only a file (not deleted) can be edited")
    edits = _service(ctx)
    async with ctx.db.service() as conn:
        row = await file_store.get_file(conn, file_id)
        replay = None
        if body.message_id is not None:
            found = await store.answer_text(conn, body.message_id)
            if found is None or found[1] != "assistant" or found[2] != access.project_id:
                raise ApiError(422, "invalid_reference",
                               "message_id must be an assistant answer in this project")
            replay = answer_code(found[0])
    if row is None:
        raise not_found("no such file")
    selection = (body.selection.start, body.selection.end) if body.selection else None
    try:
        edit = await edits.start_edit(
            user_id=ctx.user_uuid, user_name=ctx.principal.email if ctx.principal else None,
            file=row, workspace_id=access.workspace_id, selection=selection,
            instruction=body.instruction, replay=replay,
        )
    except EditError as exc:
        raise ApiError(STATUS.get(exc.code, 400), exc.code, exc.message,
                       extra=exc.extra) from None
    return JSONResponse(to_jsonable_python({"edit": edit}), 202)


async def _edit_row(ctx: Ctx, min_role: str) -> dict[str, Any]:
    async with ctx.db.service() as conn:
        row = await store.get_job(conn, ctx.uuid("edit_id"))
    if row is None or row["job_type"] not in ("refactor", "generate") or row["project_id"] is None:
        raise not_found("no such edit")
    await require_project(ctx, row["project_id"], min_role)
    return row


async def cancel_edit(ctx: Ctx) -> dict[str, Any]:
    body: EditCancel = ctx.body
    row = await _edit_row(ctx, "member")
    if row["status"] not in ("pending", "running"):
        raise ApiError(409, "finished", f"the edit is {row['status']} already")
    await _service(ctx).cancel(row["id"], body.keep)
    return {"edit": {"id": row["id"], "status": "cancelling", "keep": body.keep}}


async def get_edit(ctx: Ctx) -> dict[str, Any]:
    return {"edit": await _edit_row(ctx, "viewer")}


ENDPOINTS = [
    Endpoint("POST", "/files/{file_id}/ai-edits", create_edit,
             "Let the assistant rewrite a range of the file (or write a chat answer into it) "
             "live in the shared document (member or higher)", "ai-edits", body=EditCreate,
             response=EditAnswer, status=202, errors=(403, 404, 409, 422, 429, 503)),
    Endpoint("POST", "/ai-edits/{edit_id}/cancel", cancel_edit,
             "Stop an AI edit, keeping or rolling back what it wrote (member or higher)",
             "ai-edits", body=EditCancel, body_required=False, response=EditAnswer,
             errors=(403, 404, 409)),
    Endpoint("GET", "/ai-edits/{edit_id}", get_edit, "An AI edit's record (its ai_jobs row)",
             "ai-edits", response=EditAnswer, errors=(403, 404)),
]
