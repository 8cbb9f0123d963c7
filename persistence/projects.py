"""Projects of a workspace. Run these on a ``Database.as_user`` connection unless noted."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

PROJECT_COLUMNS = """
id, workspace_id, name, slug, description, repository_url, language, framework, visibility,
settings, last_accessed_at, created_at, updated_at
"""
INSERT_PROJECT = """
insert into public.projects (id, workspace_id, name, slug, description, repository_url,
                             language, framework, visibility, settings)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
SELECT_PROJECT = f"select {PROJECT_COLUMNS} from public.projects where id = $1"
LIST_PROJECTS = f"""
select {PROJECT_COLUMNS}
from public.projects
where workspace_id = $1
  and ($2::timestamptz is null or (last_accessed_at, id) < ($2, $3))
order by last_accessed_at desc, id desc
limit $4
"""
# Opening a project is a read, so viewers do it too: the service records it after the
# caller's read access was checked.
UPDATABLE_PROJECT_FIELDS = (
    "name",
    "slug",
    "description",
    "repository_url",
    "language",
    "framework",
    "visibility",
    "settings",
)
DELETE_PROJECT = "delete from public.projects where id = $1 returning id"


async def insert_project(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, slug: str, fields: dict[str, Any]
) -> uuid.UUID:
    project_id = uuid.uuid4()
    await conn.execute(
        INSERT_PROJECT,
        project_id,
        workspace_id,
        fields["name"],
        slug,
        fields.get("description"),
        fields.get("repository_url"),
        fields.get("language"),
        fields.get("framework"),
        fields.get("visibility") or "private",
        fields.get("settings") or {},
    )
    return project_id


async def get_project(conn: asyncpg.Connection, project_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_PROJECT, project_id)
    return dict(row) if row else None


async def list_projects(
    conn: asyncpg.Connection,
    workspace_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_PROJECTS, workspace_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def update_project(
    conn: asyncpg.Connection, project_id: uuid.UUID, changes: dict[str, Any]
) -> bool:
    fields = [name for name in UPDATABLE_PROJECT_FIELDS if name in changes]
    if not fields:
        return await conn.fetchval(SELECT_PROJECT, project_id) is not None
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(fields))
    query = f"update public.projects set {assignments} where id = $1 returning id"
    return await conn.fetchval(query, project_id, *(changes[n] for n in fields)) is not None


async def delete_project(conn: asyncpg.Connection, project_id: uuid.UUID) -> bool:
    return await conn.fetchval(DELETE_PROJECT, project_id) is not None
