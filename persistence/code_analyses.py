"""code_analyses as a cache: by (project, content hash, analysis type, model), with expiry.
Service connections (the API authorized the caller for the project)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

COLUMNS = """
id, project_id, file_id, file_path, analysis_type, result, model, content_hash, line_start,
line_end, job_id, created_at, expires_at
"""
LOOKUP = f"""
select {COLUMNS} from public.code_analyses
where project_id = $1 and content_hash = $2 and analysis_type = $3
  and model is not distinct from $4 and (expires_at is null or expires_at > now())
"""
# One result per key (a job that ran twice rewrites it); results of older contents of the
# same file, type and model are gone with it: a changed file invalidates.
STORE = f"""
with stored as (
  insert into public.code_analyses (project_id, file_id, file_path, analysis_type, result,
                                    model, content_hash, line_start, line_end, job_id,
                                    expires_at)
  values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
  on conflict (project_id, content_hash, analysis_type, model) where content_hash is not null
  do update set result = excluded.result, file_id = excluded.file_id,
                file_path = excluded.file_path, job_id = excluded.job_id,
                created_at = now(), expires_at = excluded.expires_at
  returning {COLUMNS}
), superseded as (
  delete from public.code_analyses a
  where a.file_id = $2 and a.analysis_type = $4 and a.model is not distinct from $6
    and a.line_start is not distinct from $8 and a.line_end is not distinct from $9
    and a.content_hash is distinct from $7
)
select * from stored
"""
FOR_FILE = f"""
select {COLUMNS} from public.code_analyses
where file_id = $1 and (expires_at is null or expires_at > now())
order by created_at desc
limit 50
"""


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


async def lookup(
    conn: asyncpg.Connection, project_id: uuid.UUID, content_hash: str, analysis_type: str,
    model: str | None,
) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(LOOKUP, project_id, content_hash, analysis_type, model))


async def store(
    conn: asyncpg.Connection, *, project_id: uuid.UUID, file_id: uuid.UUID, file_path: str,
    analysis_type: str, result: dict[str, Any], model: str | None, content_hash: str,
    lines: tuple[int, int] | None, job_id: uuid.UUID | None, expires_at: datetime,
) -> dict[str, Any]:
    row = await conn.fetchrow(
        STORE, project_id, file_id, file_path, analysis_type, result, model, content_hash,
        lines[0] if lines else None, lines[1] if lines else None, job_id, expires_at,
    )
    assert row is not None
    return dict(row)


async def for_file(conn: asyncpg.Connection, file_id: uuid.UUID) -> list[dict[str, Any]]:
    return [dict(row) for row in await conn.fetch(FOR_FILE, file_id)]
