"""The REST hot reads in one statement each: the access check as the service, the switch
to the user, the read under RLS (sql/0270_hot_reads_as_user.sql).

Run outside a transaction: the statement's own transaction ends with it, so the user's
settings end there too and the connection goes back to the pool as the service. One round
trip where a check followed by ``Database.as_user`` takes four (BEGIN, check and switch,
read, COMMIT). The columns ``access_workspace_id``, ``access_project_id`` and
``access_role`` are the check's answer; the others the read's (null when RLS hid the row).
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

import asyncpg

READ_FILE_AS_USER = "select * from public.read_file_as_user($1, $2, $3)"
LIST_FILES_AS_USER = "select * from public.list_files_as_user($1, $2, $3, $4, $5, $6, $7)"
OPEN_PROJECT_AS_USER = "select * from public.open_project_as_user($1, $2, $3)"

ACCESS_COLUMNS = ("access_workspace_id", "access_project_id", "access_role")


@functools.lru_cache(maxsize=4096)
def user_claims(user_id: str) -> str:
    """The JWT claims ``Database.as_user`` sets for a user, as JSON (the same text every
    request of that user)."""
    return json.dumps({"sub": user_id, "role": "authenticated"})


def read_columns(record: asyncpg.Record, skip: int) -> dict[str, Any] | None:
    """The read's columns of ``record`` (those after its first ``skip``), or None when the
    read found nothing."""
    if record["id"] is None:
        return None
    items = list(record.items())
    return dict(items[skip:])


async def read_file(
    conn: asyncpg.Connection, file_id: uuid.UUID, user_id: str
) -> asyncpg.Record:
    """One row: the check (plus ``logged``: the document has log rows not yet merged into
    ``files.content``), then the file with its content."""
    row = await conn.fetchrow(READ_FILE_AS_USER, file_id, uuid.UUID(user_id),
                              user_claims(user_id))
    assert row is not None  # the function always returns its check's row
    return row


async def list_files(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: str, include_deleted: bool,
    after: tuple[Any, uuid.UUID] | None, limit: int,
) -> tuple[asyncpg.Record, list[dict[str, Any]]]:
    """The check's row and up to ``limit`` files in path order after the cursor ``after``
    (``persistence.files.list_files``'s order)."""
    key, last_id = after if after else (None, None)
    rows = await conn.fetch(LIST_FILES_AS_USER, project_id, uuid.UUID(user_id),
                            user_claims(user_id), include_deleted, key, last_id, limit)
    files = [dict(r) for r in rows[1:]]
    for file in files:  # null on file rows; cheaper dropped than sliced out of each row
        for name in ACCESS_COLUMNS:
            del file[name]
    return rows[0], files


async def open_project(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: str
) -> asyncpg.Record:
    """One row: the check, then (for a member, after recording ``last_accessed_at``) the
    project."""
    row = await conn.fetchrow(OPEN_PROJECT_AS_USER, project_id, uuid.UUID(user_id),
                              user_claims(user_id))
    assert row is not None
    return row
