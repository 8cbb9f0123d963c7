"""Running code: start a run (202 at once), read it, follow its output as Server-Sent Events,
and list the languages this deployment can run."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python
from starlette.responses import JSONResponse, StreamingResponse

from execution.backend import ExecutionError
from execution.runner import ExecutionHub, RunLimits, public
from server.api.guards import require_project
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, not_found

MAX_SOURCE = 512 * 1024
MAX_STDIN = 1024 * 1024


class ExecutionCreate(BaseModel):
    language: str | None = Field(None, max_length=32)
    source_code: str | None = Field(None, max_length=MAX_SOURCE)
    file_id: uuid.UUID | None = None
    stdin: str = Field("", max_length=MAX_STDIN)
    cpu_time_limit: float | None = Field(None, gt=0, le=600)
    wall_time_limit: float | None = Field(None, gt=0, le=600)
    memory_limit: int | None = Field(None, gt=1024, le=64 * 1024 * 1024)


class Execution(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID | None
    file_id: uuid.UUID | None
    user_id: uuid.UUID | None
    language: str
    status: str
    status_id: int
    status_description: str
    finished: bool
    queue_position: int | None = Field(
        None, description="while waiting for a sandbox slot: 1 = next to start; 0 = has its "
        "slot; null once finished (or when another server process holds the run)",
    )
    stdin: str | None
    stdout: str | None
    stderr: str | None
    compile_output: str | None
    exit_code: int | None
    execution_time_ms: float | None
    wall_time_ms: float | None
    memory_kb: int | None
    message: str | None
    backend: str | None
    token: str | None
    created_at: datetime | None
    finished_at: datetime | None


class LanguageInfo(BaseModel):
    id: str
    name: str
    version: str
    extensions: list[str]
    compiled: bool


class LanguageList(BaseModel):
    backend: str
    languages: list[LanguageInfo]


ERROR_STATUS = {"file_not_found": 404, "too_many_runs": 429, "sandbox_unavailable": 503}


def _hub(ctx: Ctx) -> ExecutionHub:
    hub = ctx.services.executions
    if hub is None:
        raise ApiError(503, "unavailable", "code execution is not configured")
    assert isinstance(hub, ExecutionHub)
    return hub


async def create_execution(ctx: Ctx) -> JSONResponse:
    body: ExecutionCreate = ctx.body
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    if (body.source_code is None) == (body.file_id is None):
        raise ApiError(422, "validation_error", "give either source_code or file_id")
    if body.source_code is not None and not body.language:
        raise ApiError(422, "validation_error", "language is required with source_code")
    hub = _hub(ctx)
    try:
        row = await hub.submit(
            user_id=ctx.user_uuid, project_id=project_id, language=body.language,
            source=body.source_code, file_id=body.file_id, stdin=body.stdin,
            limits=RunLimits(body.cpu_time_limit, body.wall_time_limit, body.memory_limit),
        )
    except ExecutionError as exc:
        status = ERROR_STATUS.get(exc.code, 422)
        raise ApiError(status, exc.code, exc.message) from None
    body_out = Execution.model_validate(public(row)).model_dump(mode="json")
    return JSONResponse(
        body_out, 202, headers={"Location": f"/api/v1/executions/{row['id']}"}
    )


async def _readable(ctx: Ctx, execution_id: uuid.UUID) -> dict[str, Any]:
    """The run, for its author or any member of its project (viewers included)."""
    row = await _hub(ctx).get(execution_id)
    if row is None:
        raise not_found("no such execution")
    if row["user_id"] == ctx.user_uuid:
        return row
    if row["project_id"] is None:
        raise not_found("no such execution")
    try:
        await require_project(ctx, row["project_id"], "viewer")
    except ApiError:
        raise not_found("no such execution") from None
    return row


async def get_execution(ctx: Ctx) -> dict[str, Any]:
    row = await _readable(ctx, ctx.uuid("execution_id"))
    return public(row)


async def execution_events(ctx: Ctx) -> StreamingResponse:
    execution_id = ctx.uuid("execution_id")
    await _readable(ctx, execution_id)
    hub = _hub(ctx)

    async def stream() -> AsyncIterator[bytes]:
        async for event in hub.events(execution_id):
            data = json.dumps(to_jsonable_python(event), ensure_ascii=False)
            yield f"event: {event['type']}\ndata: {data}\n\n".encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def list_languages(ctx: Ctx) -> dict[str, Any]:
    hub = _hub(ctx)
    problem = hub.unavailable()
    if problem is not None:
        raise ApiError(503, "sandbox_unavailable", problem)
    return {"backend": hub.backend.name, "languages": await hub.languages()}


ENDPOINTS = [
    Endpoint("POST", "/projects/{project_id}/executions", create_execution,
             "Run code (member or higher): 202 with the queued run and its queue_position "
             "(runs are scheduled fairly between workspaces, capped per user and project); "
             "output streams on the project channel and /executions/{id}/events",
             "executions",
             body=ExecutionCreate, response=Execution, status=202,
             errors=(403, 404, 422, 429, 503)),
    Endpoint("GET", "/executions/{execution_id}", get_execution,
             "A run: status (Judge0's list), output, time, memory", "executions",
             response=Execution, errors=(404,)),
    Endpoint("GET", "/executions/{execution_id}/events", execution_events,
             "A run's output as Server-Sent Events (execution.output, execution.finished)",
             "executions", errors=(404,)),
    Endpoint("GET", "/languages", list_languages,
             "Languages this deployment can run", "executions", response=LanguageList,
             errors=(503,)),
]
