"""What the assistant may see of a project: the file tree, a file by path, text search,
the last run. Run on a service connection after the caller was authorized for the project."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

FILE_TREE = """
select path, type from public.files
where project_id = $1 and not coalesce(is_deleted, false)
order by path collate "C"
limit $2
"""
FILE_BY_PATH = """
select id, path, type, language, content from public.files
where project_id = $1 and path = $2 and not coalesce(is_deleted, false)
"""
# Stored text only (files.content: what the last compaction wrote); the hub's live text of
# the files found is read afterwards by the caller.
SEARCH_FILES = """
select id, path from public.files
where project_id = $1 and type = 'file' and not coalesce(is_deleted, false)
  and strpos(lower(coalesce(content, '')), lower($2)) > 0
order by path collate "C"
limit $3
"""
LAST_RUN = """
select e.language, e.status, e.exit_code, e.stdout, e.stderr, e.compile_output, e.message,
       e.created_at, f.path
from public.code_executions e left join public.files f on f.id = e.file_id
where e.project_id = $1 and e.user_id = $2
order by e.created_at desc, e.id desc
limit 1
"""


async def file_tree(conn: asyncpg.Connection, project_id: uuid.UUID, limit: int) -> list[
    tuple[str, str]
]:
    return [(row["path"], row["type"]) for row in await conn.fetch(FILE_TREE, project_id, limit)]


async def file_by_path(
    conn: asyncpg.Connection, project_id: uuid.UUID, path: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(FILE_BY_PATH, project_id, path)


async def search_files(
    conn: asyncpg.Connection, project_id: uuid.UUID, query: str, limit: int
) -> list[tuple[uuid.UUID, str]]:
    rows = await conn.fetch(SEARCH_FILES, project_id, query, limit)
    return [(row["id"], row["path"]) for row in rows]


async def last_run(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(LAST_RUN, project_id, user_id)
    return dict(row) if row is not None else None
