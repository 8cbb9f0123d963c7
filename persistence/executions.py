"""code_executions, terminal_sessions and the 'executions' usage rows. Run as the service:
the execution hub has authorized the caller before it writes on their behalf."""

from __future__ import annotations

import json
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg

EXECUTION_COLUMNS = """
id, user_id, project_id, file_id, language, stdin, stdout, stderr, compile_output, status,
exit_code, execution_time_ms, wall_time_ms, memory_kb, token, message, backend, created_at,
finished_at
"""
INSERT_EXECUTION = f"""
insert into public.code_executions
  (user_id, project_id, file_id, language, source_code, stdin, status, backend)
values ($1, $2, $3, $4, $5, $6, $7, $8)
returning {EXECUTION_COLUMNS}
"""
SET_STATUS = "update public.code_executions set status = $2 where id = $1"
FINISH_EXECUTION = f"""
update public.code_executions
set status = $2, stdout = $3, stderr = $4, compile_output = $5, exit_code = $6,
    execution_time_ms = $7, wall_time_ms = $8, memory_kb = $9, token = $10, message = $11,
    finished_at = now()
where id = $1
returning {EXECUTION_COLUMNS}
"""
SELECT_EXECUTION = f"select {EXECUTION_COLUMNS} from public.code_executions where id = $1"
LIST_PROJECT_EXECUTIONS = f"""
select {EXECUTION_COLUMNS} from public.code_executions
where project_id = $1 order by created_at desc, id desc limit $2
"""
# Runs interrupted by a shutdown or crash: left as internal errors, not "processing" forever.
ABANDON_UNFINISHED = """
update public.code_executions
set status = 'internal_error', message = 'interrupted: the server stopped during the run',
    finished_at = now()
where finished_at is null and status in ('in_queue', 'processing') and id = any($1::uuid[])
"""
INSERT_USAGE = """
insert into public.usage_records (user_id, workspace_id, resource_type, amount, unit, metadata)
values ($1, $2, 'executions', 1, 'execution', $3)
"""
INSERT_TERMINAL_COMMAND = """
insert into public.terminal_sessions
  (user_id, project_id, command, output, exit_code, duration_ms, working_directory)
values ($1, $2, $3, $4, $5, $6, $7)
returning id
"""
LIST_TERMINAL_COMMANDS = """
select id, user_id, project_id, command, output, exit_code, duration_ms, working_directory,
       created_at
from public.terminal_sessions where project_id = $1 order by created_at, id limit $2
"""
SELECT_PROJECT_WORKSPACE = "select workspace_id from public.projects where id = $1"
MICROSECOND = Decimal("0.001")  # of a millisecond


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    row = dict(record)
    for key in ("execution_time_ms", "wall_time_ms"):
        if isinstance(row.get(key), Decimal):
            row[key] = float(row[key])
    return row


async def create_execution(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    project_id: uuid.UUID | None,
    file_id: uuid.UUID | None,
    language: str,
    source: str,
    stdin: str,
    status: str,
    backend: str,
) -> dict[str, Any]:
    record = await conn.fetchrow(
        INSERT_EXECUTION, user_id, project_id, file_id, language, source, stdin, status, backend
    )
    row = _row(record)
    assert row is not None
    return row


async def set_status(conn: asyncpg.Connection, execution_id: uuid.UUID, status: str) -> None:
    await conn.execute(SET_STATUS, execution_id, status)


async def finish_execution(
    conn: asyncpg.Connection,
    execution_id: uuid.UUID,
    *,
    status: str,
    stdout: str,
    stderr: str,
    compile_output: str | None,
    exit_code: int | None,
    time_ms: float | None,
    wall_ms: float | None,
    memory_kb: int | None,
    token: str | None,
    message: str | None,
) -> dict[str, Any] | None:
    return _row(
        await conn.fetchrow(
            FINISH_EXECUTION, execution_id, status, _clean(stdout), _clean(stderr),
            _clean(compile_output), exit_code, _milliseconds(time_ms), _milliseconds(wall_ms),
            memory_kb, token, _clean(message),
        )
    )


def _milliseconds(value: float | None) -> Decimal | None:
    """Milliseconds to the microsecond (what rusage measures), as an exact decimal: a float
    handed to a ``numeric`` column is stored with its binary noise (27.39199999999999945...)."""
    if value is None:
        return None
    return Decimal(repr(value)).quantize(MICROSECOND, rounding=ROUND_HALF_EVEN)


def _clean(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters; programs print them anyway."""
    return text.replace("\x00", "\ufffd") if text is not None else None


async def get_execution(conn: asyncpg.Connection, execution_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_EXECUTION, execution_id))


async def list_project_executions(
    conn: asyncpg.Connection, project_id: uuid.UUID, limit: int = 50
) -> list[dict[str, Any]]:
    return [r for r in map(_row, await conn.fetch(LIST_PROJECT_EXECUTIONS, project_id, limit)) if r]


async def abandon_unfinished(conn: asyncpg.Connection, execution_ids: list[uuid.UUID]) -> None:
    await conn.execute(ABANDON_UNFINISHED, execution_ids)


async def project_workspace(conn: asyncpg.Connection, project_id: uuid.UUID) -> uuid.UUID | None:
    workspace_id: uuid.UUID | None = await conn.fetchval(SELECT_PROJECT_WORKSPACE, project_id)
    return workspace_id


async def record_usage(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    project_id: uuid.UUID | None,
    metadata: dict[str, Any],
) -> None:
    workspace_id = None
    if project_id is not None:
        workspace_id = await conn.fetchval(SELECT_PROJECT_WORKSPACE, project_id)
    await conn.execute(INSERT_USAGE, user_id, workspace_id, json.loads(json.dumps(metadata)))


async def record_terminal_command(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    project_id: uuid.UUID,
    command: str,
    output: str,
    exit_code: int | None,
    duration_ms: int | None,
    working_directory: str | None,
) -> uuid.UUID:
    command_id: uuid.UUID = await conn.fetchval(
        INSERT_TERMINAL_COMMAND, user_id, project_id, _clean(command), _clean(output), exit_code,
        duration_ms, _clean(working_directory),
    )
    return command_id


async def list_terminal_commands(
    conn: asyncpg.Connection, project_id: uuid.UUID, limit: int = 100
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_TERMINAL_COMMANDS, project_id, limit)]


# -- the workspace on disk: what to materialize, and binary files brought back -------------

LIST_WORKSPACE_FILES = """
select id, path, type, content, storage_path, size_bytes
from public.files
where project_id = $1 and not is_deleted
order by path collate "C"
"""
SET_STORED_BLOB = """
update public.files
set content = null, storage_path = $2, size_bytes = $3, updated_by = $4
where id = $1
"""


LOCK_PROJECT_DISK = "select pg_advisory_xact_lock(hashtextextended('project-disk:' || $1, 0))"
STORED_FILE_SIZES = """
select id, coalesce(size_bytes, octet_length(content), 0) as bytes
from public.files
where project_id = $1 and type = 'file' and not is_deleted
"""


async def lock_project_disk(
    conn: asyncpg.Connection, project_id: uuid.UUID
) -> dict[uuid.UUID, int]:
    """Take the project's disk lock for this transaction; the stored size of each file."""
    await conn.execute(LOCK_PROJECT_DISK, str(project_id))
    return {r["id"]: int(r["bytes"]) for r in await conn.fetch(STORED_FILE_SIZES, project_id)}


async def workspace_files(conn: asyncpg.Connection, project_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_WORKSPACE_FILES, project_id)]


async def set_stored_blob(
    conn: asyncpg.Connection, file_id: uuid.UUID, storage_path: str, size: int,
    user_id: uuid.UUID,
) -> None:
    await conn.execute(SET_STORED_BLOB, file_id, storage_path, size, user_id)
