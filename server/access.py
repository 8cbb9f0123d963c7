"""Who may do what: the caller's workspace role for a workspace, project, file or conversation.

These run as the service (they are the authorization step itself); reads and writes made
afterwards on the user's behalf still go through RLS where the hub allows it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import asyncpg

from persistence.db import USER_CONTEXT_COLUMNS, Database

ROLE_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}

SELECT_WORKSPACE_ROLE = """
select role from public.workspace_members where workspace_id = $1 and user_id = $2
"""
SELECT_PROJECT_ACCESS = """
select p.workspace_id, p.id as project_id, m.role
from public.projects p
left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = $2
where p.id = $1
"""
# Opening a project: the access check and, for a member, last_accessed_at in one statement
# (a data-modifying CTE always runs; it touches only when the caller has a role).
OPEN_PROJECT_ACCESS = """
with access as (
  select p.workspace_id, p.id as project_id, m.role
  from public.projects p
  left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = $2
  where p.id = $1
), touched as (
  update public.projects set last_accessed_at = now()
  where id = $1 and exists (select 1 from access where role is not null)
)
select workspace_id, project_id, role from access
"""
SELECT_FILE_ACCESS = """
select p.workspace_id, p.id as project_id, f.id as file_id, f.type, f.is_deleted, m.role,
       f.storage_path is not null as stored
from public.files f
join public.projects p on p.id = f.project_id
left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = $2
where f.id = $1
"""
# The same, plus whether the file's document has log rows not yet merged into files.content
# (a compaction writes the state and files.content together and deletes what it merged):
# GET /files/{id} skips loading the document when it has none.
SELECT_FILE_READ_ACCESS = """
select p.workspace_id, p.id as project_id, f.id as file_id, f.type, f.is_deleted, m.role,
       f.storage_path is not null as stored,
       exists (select 1 from public.document_updates u where u.file_id = f.id) as logged
from public.files f
join public.projects p on p.id = f.project_id
left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = $2
where f.id = $1
"""
# The checks of the hot reads, as the first statement of the user's transaction
# (``Database.as_user_after``): one row always, its columns null when nothing matched.
FILE_READ_ACCESS_AS_USER = f"""
select a.*, {USER_CONTEXT_COLUMNS}
from (select) one left join ({SELECT_FILE_READ_ACCESS}) a on true
"""
PROJECT_ACCESS_AS_USER = f"""
select a.*, {USER_CONTEXT_COLUMNS}
from (select) one left join ({SELECT_PROJECT_ACCESS}) a on true
"""
SELECT_CONVERSATION_ACCESS = """
select p.workspace_id, p.id as project_id, c.id as conversation_id, m.role
from public.conversations c
join public.projects p on p.id = c.project_id
left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = $2
where c.id = $1
"""


@dataclass(frozen=True)
class Access:
    """The caller's role (None: not a member) on an object that exists."""

    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    role: str | None
    file_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    is_folder: bool = False
    is_deleted: bool = False
    # The file's bytes are a stored object (binary or large): never a CRDT document.
    is_stored: bool = False
    # Log rows newer than files.content exist (None: not asked, see file_read_access).
    has_unmerged_log: bool | None = None

    @property
    def is_member(self) -> bool:
        return self.role is not None

    def at_least(self, role: str) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def can_write(self) -> bool:
        return self.at_least("member")


def parse_uuid(value: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


async def workspace_role(db: Database, user_id: str, workspace_id: uuid.UUID) -> str | None:
    async with db.acquire() as conn:
        role: str | None = await conn.fetchval(
            SELECT_WORKSPACE_ROLE, workspace_id, uuid.UUID(user_id)
        )
        return role


async def _fetch(
    db: Database, query: str, object_id: uuid.UUID, user_id: str
) -> asyncpg.Record | None:
    async with db.acquire() as conn:
        return await conn.fetchrow(query, object_id, uuid.UUID(user_id))


async def project_access(db: Database, user_id: str, project_id: uuid.UUID) -> Access | None:
    row = await _fetch(db, SELECT_PROJECT_ACCESS, project_id, user_id)
    if row is None:
        return None
    return Access(row["workspace_id"], row["project_id"], row["role"])


async def open_project_access(
    db: Database, user_id: str, project_id: uuid.UUID
) -> Access | None:
    """``project_access`` that also records the project as opened when the caller has a
    role. A statement of its own, outside any transaction: inside one, the row lock taken
    by the update would be held to its end and concurrent opens would queue behind it."""
    return project_from_row(await _fetch(db, OPEN_PROJECT_ACCESS, project_id, user_id))


def project_from_row(row: asyncpg.Record | None) -> Access | None:
    """The Access a project access row means (None: no such project)."""
    if row is None or row["project_id"] is None:
        return None
    return Access(row["workspace_id"], row["project_id"], row["role"])


async def file_access(db: Database, user_id: str, file_id: uuid.UUID) -> Access | None:
    return file_from_row(await _fetch(db, SELECT_FILE_ACCESS, file_id, user_id))


def file_read_from_row(row: asyncpg.Record) -> Access | None:
    """The Access a ``FILE_READ_ACCESS_AS_USER`` row means (None: no such file)."""
    access = file_from_row(row)
    if access is None:
        return None
    return replace(access, has_unmerged_log=bool(row["logged"]))


def file_from_row(row: asyncpg.Record | None) -> Access | None:
    if row is None or row["file_id"] is None:
        return None
    return Access(
        row["workspace_id"],
        row["project_id"],
        row["role"],
        file_id=row["file_id"],
        is_folder=row["type"] == "folder",
        is_deleted=bool(row["is_deleted"]),
        is_stored=bool(row["stored"]),
    )


async def conversation_access(
    db: Database, user_id: str, conversation_id: uuid.UUID
) -> Access | None:
    row = await _fetch(db, SELECT_CONVERSATION_ACCESS, conversation_id, user_id)
    if row is None:
        return None
    return Access(
        row["workspace_id"], row["project_id"], row["role"], conversation_id=row["conversation_id"]
    )
