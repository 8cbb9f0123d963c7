"""Connected repositories, their sync state and base tree, push webhooks.

Run as the service (the sync jobs, and the REST endpoints after authorizing the caller).
Secrets (``credentials_encrypted``, ``webhook_secret_encrypted``) are ciphertext made by
the application; this module never sees plaintext.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

REPOSITORY_COLUMNS = """
id, project_id, provider, repo_url, repo_full_name, default_branch, last_sync_at,
sync_status, created_at, updated_at, base_commit, auth_source, credentials_username,
connected_by, last_error
"""
INSERT_REPOSITORY = f"""
insert into public.git_repositories (project_id, provider, repo_url, repo_full_name,
  default_branch, sync_status, auth_source, credentials_username, connected_by)
values ($1, $2, $3, $4, $5, 'idle', $6, $7, $8)
on conflict (project_id) do nothing
returning {REPOSITORY_COLUMNS}
"""
# Bound to the row's id (the encryption context names it), so written after the insert.
SET_SECRETS = """
update public.git_repositories
set credentials_encrypted = $2, webhook_secret_encrypted = $3
where id = $1
"""
SELECT_REPOSITORY = f"select {REPOSITORY_COLUMNS} from public.git_repositories where id = $1"
SELECT_BY_PROJECT = (
    f"select {REPOSITORY_COLUMNS} from public.git_repositories where project_id = $1"
)
SELECT_SECRETS = """
select credentials_encrypted, webhook_secret_encrypted from public.git_repositories
where id = $1
"""
DELETE_REPOSITORY = "delete from public.git_repositories where id = $1 returning id"
SET_SYNCING = """
update public.git_repositories set sync_status = 'syncing' where id = $1
returning id
"""
SET_SYNCED = """
update public.git_repositories
set sync_status = 'idle', last_sync_at = now(), last_error = null,
    base_commit = coalesce($2, base_commit), default_branch = coalesce($3, default_branch)
where id = $1
"""
SET_FAILED = """
update public.git_repositories set sync_status = 'error', last_error = $2 where id = $1
"""
SET_IDLE = "update public.git_repositories set sync_status = 'idle' where id = $1"
# The tree of base_commit.
SELECT_BASE = """
select path, blob_sha, mode, in_project, storage_key
from public.git_repository_files where repository_id = $1
"""
DELETE_BASE_PATHS = """
delete from public.git_repository_files where repository_id = $1 and path = any($2::text[])
"""
INSERT_BASE = """
insert into public.git_repository_files (repository_id, path, blob_sha, mode, in_project,
                                         storage_key)
select $1, * from unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[])
"""
ADVISORY_LOCK = "select pg_advisory_lock(hashtextextended('git:' || $1::text, 0))"
ADVISORY_UNLOCK = "select pg_advisory_unlock(hashtextextended('git:' || $1::text, 0))"
SELECT_AUTHOR = "select email, full_name from public.users where id = $1"
# The project's live files: text, object key, and whether the update log holds edits not
# yet compacted into files.content (then the document hub has the current text).
SELECT_PROJECT_FILES = """
select f.id, f.path, f.content, f.storage_path,
       exists (select 1 from public.document_updates u where u.file_id = f.id) as pending
from public.files f
where f.project_id = $1 and f.type = 'file' and not f.is_deleted
order by f.path collate "C"
"""
SELECT_PROJECT_PATHS = """
select path, type, is_deleted, id from public.files where project_id = $1
"""
# Many new rows at once (an import): folders first (parents before children), then files.
INSERT_TREE_NODES = """
insert into public.files (id, project_id, path, name, type, content, size_bytes, mime_type,
                          language, parent_id, storage_path, created_by, updated_by)
select id, $1, path, name, type, content, size, mime, lang, parent, skey, $2, $2
from unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
            $9::text[], $10::text[], $11::uuid[], $12::text[])
  as t(id, path, name, type, content, size, mime, lang, parent, skey)
"""
PURGE_DELETED_PATHS = """
delete from public.files where project_id = $1 and is_deleted and path = any($2::text[])
"""
SELECT_FILES_BY_ID = """
select id, project_id, path, name, type, size_bytes, mime_type, language, parent_id,
       storage_path, is_deleted, created_by, updated_by, created_at, updated_at
from public.files where id = any($1::uuid[])
"""
# Webhook deliveries: stored first (status 'received'), once per delivery id.
INSERT_WEBHOOK = """
insert into public.webhook_logs (provider, event_type, payload, signature, status, event_id)
values ($1, $2, $3, $4, 'received', $5)
on conflict (provider, event_id) where event_id is not null do nothing
returning id
"""
SELECT_WEBHOOK = """
select id, status, response from public.webhook_logs where provider = $1 and event_id = $2
"""
FINISH_WEBHOOK = """
update public.webhook_logs set status = $2, response = $3, error = $4, processed_at = now()
where id = $1
"""


@dataclass(frozen=True)
class BaseRow:
    path: str
    blob_sha: str
    mode: str
    in_project: bool
    storage_key: str | None


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None


async def insert_repository(
    conn: asyncpg.Connection, project_id: uuid.UUID, *, provider: str, repo_url: str,
    full_name: str | None, default_branch: str, auth_source: str, username: str | None,
    connected_by: uuid.UUID,
) -> dict[str, Any] | None:
    """The new row; None when the project already has a repository."""
    return _row(await conn.fetchrow(
        INSERT_REPOSITORY, project_id, provider, repo_url, full_name, default_branch,
        auth_source, username, connected_by,
    ))


async def set_secrets(
    conn: asyncpg.Connection, repository_id: uuid.UUID, credentials: str | None,
    webhook_secret: str | None,
) -> None:
    await conn.execute(SET_SECRETS, repository_id, credentials, webhook_secret)


async def secrets(conn: asyncpg.Connection, repository_id: uuid.UUID) -> tuple[str | None,
                                                                            str | None]:
    row = await conn.fetchrow(SELECT_SECRETS, repository_id)
    if row is None:
        return None, None
    return row["credentials_encrypted"], row["webhook_secret_encrypted"]


async def get(conn: asyncpg.Connection, repository_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_REPOSITORY, repository_id))


async def by_project(conn: asyncpg.Connection, project_id: uuid.UUID) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_BY_PROJECT, project_id))


async def delete(conn: asyncpg.Connection, repository_id: uuid.UUID) -> bool:
    return await conn.fetchval(DELETE_REPOSITORY, repository_id) is not None


async def set_syncing(conn: asyncpg.Connection, repository_id: uuid.UUID) -> bool:
    return await conn.fetchval(SET_SYNCING, repository_id) is not None


async def set_synced(
    conn: asyncpg.Connection, repository_id: uuid.UUID, base_commit: str | None,
    default_branch: str | None = None,
) -> None:
    await conn.execute(SET_SYNCED, repository_id, base_commit, default_branch)


async def set_failed(
    conn: asyncpg.Connection, repository_id: uuid.UUID, error: dict[str, Any]
) -> None:
    await conn.execute(SET_FAILED, repository_id, error)


async def set_idle(conn: asyncpg.Connection, repository_id: uuid.UUID) -> None:
    await conn.execute(SET_IDLE, repository_id)


async def base_tree(conn: asyncpg.Connection, repository_id: uuid.UUID) -> dict[str, BaseRow]:
    rows = await conn.fetch(SELECT_BASE, repository_id)
    return {r["path"]: BaseRow(r["path"], r["blob_sha"], r["mode"], r["in_project"],
                               r["storage_key"]) for r in rows}


async def replace_base(
    conn: asyncpg.Connection, repository_id: uuid.UUID, removed: Sequence[str],
    rows: Sequence[BaseRow],
) -> None:
    """Delete ``removed`` paths and (re)write ``rows`` of the base tree."""
    gone = list({*removed, *(r.path for r in rows)})
    if gone:
        await conn.execute(DELETE_BASE_PATHS, repository_id, gone)
    if rows:
        await conn.execute(
            INSERT_BASE, repository_id, [r.path for r in rows], [r.blob_sha for r in rows],
            [r.mode for r in rows], [r.in_project for r in rows],
            [r.storage_key for r in rows],
        )


async def lock(conn: asyncpg.Connection, repository_id: uuid.UUID) -> None:
    """One sync of a repository at a time, across processes (a session lock: ``unlock``)."""
    await conn.execute(ADVISORY_LOCK, str(repository_id))


async def unlock(conn: asyncpg.Connection, repository_id: uuid.UUID) -> None:
    await conn.execute(ADVISORY_UNLOCK, str(repository_id))


async def author(conn: asyncpg.Connection, user_id: uuid.UUID) -> tuple[str, str] | None:
    """(name, email) of a user: the author of the commits they push."""
    row = await conn.fetchrow(SELECT_AUTHOR, user_id)
    if row is None:
        return None
    email = str(row["email"])
    return str(row["full_name"] or email.split("@", 1)[0]), email


async def project_files(conn: asyncpg.Connection, project_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_PROJECT_FILES, project_id))


async def project_paths(conn: asyncpg.Connection, project_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(SELECT_PROJECT_PATHS, project_id))


@dataclass(frozen=True)
class NewNode:
    id: uuid.UUID
    path: str
    name: str
    type: str  # file or folder
    content: str | None
    size: int | None
    mime_type: str | None
    language: str | None
    parent_id: uuid.UUID | None
    storage_key: str | None


async def insert_nodes(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: uuid.UUID,
    nodes: Sequence[NewNode],
) -> None:
    """Insert many rows in one statement (parents listed before their children)."""
    if not nodes:
        return
    await conn.execute(PURGE_DELETED_PATHS, project_id, [n.path for n in nodes])
    await conn.execute(
        INSERT_TREE_NODES, project_id, user_id, [n.id for n in nodes], [n.path for n in nodes],
        [n.name for n in nodes], [n.type for n in nodes], [n.content for n in nodes],
        [n.size for n in nodes], [n.mime_type for n in nodes], [n.language for n in nodes],
        [n.parent_id for n in nodes], [n.storage_key for n in nodes],
    )


async def files_by_id(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(SELECT_FILES_BY_ID, list(ids))]


async def insert_webhook(
    conn: asyncpg.Connection, provider: str, event_type: str, payload: Any,
    signature: str | None, delivery_id: str,
) -> uuid.UUID | None:
    """The new log row's id; None when this delivery was stored before."""
    log_id: uuid.UUID | None = await conn.fetchval(
        INSERT_WEBHOOK, provider, event_type, payload, signature, delivery_id
    )
    return log_id


async def webhook(
    conn: asyncpg.Connection, provider: str, delivery_id: str
) -> dict[str, Any] | None:
    return _row(await conn.fetchrow(SELECT_WEBHOOK, provider, delivery_id))


async def finish_webhook(
    conn: asyncpg.Connection, log_id: uuid.UUID, status: str, response: Any,
    error: str | None,
) -> None:
    await conn.execute(FINISH_WEBHOOK, log_id, status, response, error)
