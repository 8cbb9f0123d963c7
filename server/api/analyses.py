"""Code analyses of a file: ask for one (cached, else a job), read the file's results.

``POST /files/{id}/analyses`` (member+): 200 with the cached analysis, or 202 with the
ai_jobs id of the queued analysis; the result comes as ``analysis.completed`` on the
project channel and in ``GET /files/{id}/analyses`` (viewer+), where every result says
whether it is ``stale`` (the file changed since it was analysed).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python
from starlette.responses import JSONResponse

from ai.analysers import language_of
from ai.analysis import Analyses, AnalysisError, content_hash, public
from persistence import code_analyses as store
from persistence import files as file_store
from server.api.guards import require_file
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, not_found

STATUS = {"unsupported_language": 422, "too_large": 413, "quota_exceeded": 402}


class LineRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_line: int = Field(ge=1, description="first line (1-based)")
    to_line: int = Field(ge=1, description="last line (inclusive)")


class AnalysisCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["explain", "complexity", "security", "performance"]
    selection: LineRange | None = None


class AnalysisAnswer(BaseModel):
    cached: bool
    analysis: dict[str, Any] | None = None
    job_id: uuid.UUID | None = None
    status: str | None = None


class AnalysisList(BaseModel):
    items: list[dict[str, Any]]


async def _file_text(ctx: Ctx, file_id: uuid.UUID) -> tuple[dict[str, Any], str]:
    async with ctx.db.service() as conn:
        row = await file_store.get_file(conn, file_id, content=True)
    if row is None:
        raise not_found("no such file")
    hub = ctx.services.documents
    live = await hub.read_text(file_id) if hub is not None else None
    return row, live if live is not None else (row["content"] or "")


async def create_analysis(ctx: Ctx) -> JSONResponse | dict[str, Any]:
    body: AnalysisCreate = ctx.body
    file_id = ctx.uuid("file_id")
    access = await require_file(ctx, file_id, "member")
    if access.is_folder or access.is_deleted:
        raise ApiError(422, "not_a_file", "only a file (not deleted) can be analysed")
    analyses: Analyses | None = ctx.services.analyses
    if analyses is None:
        raise ApiError(503, "ai_unavailable", "analyses are not available")
    row, text = await _file_text(ctx, file_id)
    lines = (body.selection.from_line, body.selection.to_line) if body.selection else None
    assert access.project_id is not None
    try:
        answer = await analyses.request(
            user_id=ctx.user_uuid, project_id=access.project_id, file_id=file_id,
            path=row["path"], text=text, analysis_type=body.type, lines=lines,
        )
    except AnalysisError as exc:
        raise ApiError(STATUS.get(exc.code, 400), exc.code, exc.message,
                       extra=exc.extra) from None
    if answer["cached"]:
        return answer
    return JSONResponse(to_jsonable_python(AnalysisAnswer(**answer).model_dump(mode="json")),
                        202)


async def list_analyses(ctx: Ctx) -> dict[str, Any]:
    file_id = ctx.uuid("file_id")
    await require_file(ctx, file_id, "viewer")
    row, text = await _file_text(ctx, file_id)
    language = language_of(row["path"])
    async with ctx.db.service() as conn:
        rows = await store.for_file(conn, file_id)
    items = []
    for item in rows:
        lines = (item["line_start"], item["line_end"]) if item["line_start"] else None
        current = content_hash(language, text, lines) if language else None
        items.append(public(item, current))
    return {"items": items}


ENDPOINTS = [
    Endpoint("POST", "/files/{file_id}/analyses", create_analysis,
             "Analyse a file or a range of its lines (explain, complexity, security, "
             "performance): the cached result, or 202 with the job to wait for (member or "
             "higher)", "analyses", body=AnalysisCreate, response=AnalysisAnswer,
             errors=(403, 404, 413, 422, 429, 503)),
    Endpoint("GET", "/files/{file_id}/analyses", list_analyses,
             "The file's analyses, each marked stale when the file changed since",
             "analyses", response=AnalysisList, errors=(403, 404)),
]
