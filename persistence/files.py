"""The project file tree and file versions. Run these on a ``Database.as_user`` connection.

``write_content`` is the single place that stores a file's text directly; once the
documents hub is registered, content writes go through ``hub.write_text`` instead.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

FILE_COLUMNS = """
id, project_id, path, name, type, size_bytes, mime_type, language, parent_id, storage_path,
is_deleted, created_by, updated_by, created_at, updated_at
"""
# A page of the tree in path order (the API reads it through public.list_files_as_user,
# sql/0270, which runs this select as the user).
LIST_FILES = f"""
select {FILE_COLUMNS}
from public.files
where project_id = $1 and ($2 or not is_deleted)
  and ($3::text is null or (path collate "C", id) > ($3 collate "C", $4))
order by path collate "C", id
limit $5
"""
SELECT_FILE = f"select {FILE_COLUMNS} from public.files where id = $1"
SELECT_FILE_CONTENT = f"select {FILE_COLUMNS}, content from public.files where id = $1"
LOCK_FILE = f"select {FILE_COLUMNS} from public.files where id = $1 for update"
SELECT_BY_PATH = f"select {FILE_COLUMNS} from public.files where project_id = $1 and path = $2"
INSERT_FILE = """
insert into public.files (id, project_id, path, name, type, content, size_bytes, mime_type,
                          language, parent_id, created_by, updated_by, storage_path)
values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)
"""
# A soft-deleted entry still holds its path (unique per project); creating or moving
# something onto that path purges the deleted entry for good (its children cascade).
PURGE_DELETED_AT = """
delete from public.files where project_id = $1 and path = $2 and is_deleted returning id
"""
MOVE_NODE = """
update public.files
set path = $2, name = $3, parent_id = $4, language = $5, mime_type = $6, updated_by = $7
where id = $1
"""
MOVE_DESCENDANTS = """
update public.files
set path = $3 || substr(path, length($2) + 1), updated_by = $4
where project_id = $1 and starts_with(path, $2 || '/')
"""
SET_DELETED = """
update public.files
set is_deleted = $3, updated_by = $4
where project_id = $1 and (path = $2 or starts_with(path, $2 || '/')) and is_deleted <> $3
returning id, type
"""
# A file's bytes become a stored object (binary or large): its text and CRDT go.
SET_STORED_OBJECT = """
update public.files
set content = null, storage_path = $2, size_bytes = $3, mime_type = $4, updated_by = $5
where id = $1 and type = 'file'
returning id
"""
# A stored object becomes a text document again (it has no CRDT state yet).
SET_TEXT_FROM_OBJECT = """
update public.files
set storage_path = null, content = $2, size_bytes = octet_length($2), mime_type = $3,
    updated_by = $4
where id = $1 and type = 'file'
returning id
"""
DROP_DOCUMENT_STATE = "delete from public.document_states where file_id = $1"
DROP_DOCUMENT_UPDATES = "delete from public.document_updates where file_id = $1"
WRITE_CONTENT = """
update public.files
set content = $2, size_bytes = octet_length($2), updated_by = $3
where id = $1 and type = 'file'
returning id
"""

VERSION_COLUMNS = """
id, file_id, version_number, size_bytes, changed_by, change_message, created_at
"""
LIST_VERSIONS = f"""
select {VERSION_COLUMNS}
from public.file_versions
where file_id = $1 and ($2::int is null or (version_number, id) < ($2, $3))
order by version_number desc, id desc
limit $4
"""
SELECT_VERSION = f"""
select {VERSION_COLUMNS}, content from public.file_versions
where file_id = $1 and version_number = $2
"""
# Callers lock the file row first, so max + 1 is not raced by another restore.
INSERT_NEXT_VERSION = f"""
insert into public.file_versions (file_id, version_number, content, size_bytes, changed_by,
                                  change_message)
select $1, coalesce(max(version_number), 0) + 1, $2, octet_length($2), $3, $4
from public.file_versions where file_id = $1
returning {VERSION_COLUMNS}
"""


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record else None


async def get_file(
    conn: asyncpg.Connection, file_id: uuid.UUID, *, content: bool = False
) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_FILE_CONTENT if content else SELECT_FILE, file_id))


async def lock_file(conn: asyncpg.Connection, file_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(LOCK_FILE, file_id))


async def by_path(
    conn: asyncpg.Connection, project_id: uuid.UUID, path: str
) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_BY_PATH, project_id, path))


async def purge_deleted_at(conn: asyncpg.Connection, project_id: uuid.UUID, path: str) -> None:
    await conn.execute(PURGE_DELETED_AT, project_id, path)


async def insert_file(
    conn: asyncpg.Connection,
    project_id: uuid.UUID,
    *,
    path: str,
    name: str,
    type: str,
    content: str | None,
    mime_type: str | None,
    language: str | None,
    parent_id: uuid.UUID | None,
    user_id: uuid.UUID,
    storage_path: str | None = None,
    size_bytes: int | None = None,
) -> uuid.UUID:
    """A new row; a stored object (``storage_path``, ``size_bytes``) has no content."""
    file_id = uuid.uuid4()
    size = len(content.encode()) if content is not None else size_bytes
    await conn.execute(
        INSERT_FILE, file_id, project_id, path, name, type, content, size, mime_type,
        language, parent_id, user_id, storage_path,
    )
    return file_id


class PathBlocked(Exception):
    """A file (not a folder) is where a parent folder should be."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


async def ensure_folders(
    conn: asyncpg.Connection, project_id: uuid.UUID, folder_path: str | None,
    user_id: uuid.UUID, created: list[dict[str, Any]] | None = None,
) -> uuid.UUID | None:
    """The id of the live folder at ``folder_path`` (None: the root), creating it and any
    missing ancestors (a soft-deleted entry in the way is purged). The rows created are
    appended to ``created``. Raises ``PathBlocked`` when a file is in the way."""
    if not folder_path:
        return None
    parts = folder_path.split("/")
    parent_id: uuid.UUID | None = None
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        folder = await by_path(conn, project_id, path)
        if folder is not None and not folder["is_deleted"]:
            if folder["type"] != "folder":
                raise PathBlocked(path)
            parent_id = folder["id"]
            continue
        if folder is not None:
            await purge_deleted_at(conn, project_id, path)
        parent_id = await insert_file(
            conn, project_id, path=path, name=parts[depth - 1], type="folder", content=None,
            mime_type=None, language=None, parent_id=parent_id, user_id=user_id,
        )
        if created is not None:
            row = await get_file(conn, parent_id)
            assert row is not None
            created.append(row)
    return parent_id


async def set_stored_object(
    conn: asyncpg.Connection, file_id: uuid.UUID, storage_path: str, size: int,
    mime_type: str | None, user_id: uuid.UUID,
) -> bool:
    """The file's bytes are now the object ``storage_path``: its text and CRDT state are
    dropped (run as the service: the CRDT tables are the document hub's)."""
    done = await conn.fetchval(SET_STORED_OBJECT, file_id, storage_path, size, mime_type, user_id)
    await conn.execute(DROP_DOCUMENT_UPDATES, file_id)
    await conn.execute(DROP_DOCUMENT_STATE, file_id)
    return done is not None


async def move(
    conn: asyncpg.Connection,
    node: dict[str, Any],
    *,
    new_path: str,
    new_name: str,
    new_parent_id: uuid.UUID | None,
    language: str | None,
    mime_type: str | None,
    user_id: uuid.UUID,
) -> None:
    """Rename/move a node; every descendant's path follows (same transaction)."""
    await conn.execute(
        MOVE_NODE, node["id"], new_path, new_name, new_parent_id, language, mime_type, user_id
    )
    if node["type"] == "folder":
        await conn.execute(MOVE_DESCENDANTS, node["project_id"], node["path"], new_path, user_id)


async def set_deleted(
    conn: asyncpg.Connection, node: dict[str, Any], deleted: bool, user_id: uuid.UUID
) -> list[uuid.UUID]:
    """Soft-delete (or restore) a node and its descendants; the ids of the files changed."""
    rows = await conn.fetch(SET_DELETED, node["project_id"], node["path"], deleted, user_id)
    return [r["id"] for r in rows if r["type"] == "file"]


async def set_text_from_object(
    conn: asyncpg.Connection, file_id: uuid.UUID, text: str, mime_type: str | None,
    user_id: uuid.UUID,
) -> bool:
    """A stored object becomes a document with ``text`` (its first CRDT state is built
    from it). Run as the service: leftovers in the hub's tables are dropped."""
    done = await conn.fetchval(SET_TEXT_FROM_OBJECT, file_id, text, mime_type, user_id)
    await conn.execute(DROP_DOCUMENT_UPDATES, file_id)
    await conn.execute(DROP_DOCUMENT_STATE, file_id)
    return done is not None


async def write_content(
    conn: asyncpg.Connection, file_id: uuid.UUID, text: str, user_id: uuid.UUID
) -> bool:
    """Store a file's text: the one direct write, replaced by the documents hub when present."""
    return await conn.fetchval(WRITE_CONTENT, file_id, text, user_id) is not None


async def list_versions(
    conn: asyncpg.Connection,
    file_id: uuid.UUID,
    after: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_VERSIONS, file_id, key, last_id, limit)
    return [dict(r) for r in rows]


async def get_version(
    conn: asyncpg.Connection, file_id: uuid.UUID, version_number: int
) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_VERSION, file_id, version_number))


async def insert_next_version(
    conn: asyncpg.Connection,
    file_id: uuid.UUID,
    content: str,
    user_id: uuid.UUID,
    message: str | None,
) -> dict[str, Any]:
    row = await conn.fetchrow(INSERT_NEXT_VERSION, file_id, content, user_id, message)
    assert row is not None
    return dict(row)
