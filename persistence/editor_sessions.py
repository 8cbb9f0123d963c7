"""The project channel's storage: ``editor_sessions`` rows and members' current roles.

One ``editor_sessions`` row per (user, project) with the user's editor layout, written by
the project hub (as the service, after it authorized the user) and read back when the user
reconnects. File ids that are not files of the project are dropped on save, so a client
cannot point the row at another project's file. ``project_roles`` lets the hub close the
sockets of members who lost access.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from persistence.db import Database

SELECT_EDITOR_SESSION = """
select open_files, active_file_id, layout_state, last_active_at
from public.editor_sessions
where user_id = $1 and project_id = $2
"""

SELECT_PROJECT_FILE_IDS = """
select id from public.files
where project_id = $1 and id = any($2::uuid[]) and not coalesce(is_deleted, false)
"""

UPSERT_EDITOR_SESSION = """
insert into public.editor_sessions
  (user_id, project_id, open_files, active_file_id, layout_state, last_active_at)
values ($1, $2, $3, $4, $5, now())
on conflict (user_id, project_id) do update
set open_files = excluded.open_files,
    active_file_id = excluded.active_file_id,
    layout_state = excluded.layout_state,
    last_active_at = now()
"""

SELECT_PROJECT_ROLES = """
select p.user_id, p.project_id, m.role
from unnest($1::uuid[], $2::uuid[]) as p(user_id, project_id)
join public.projects pr on pr.id = p.project_id
left join public.workspace_members m
  on m.workspace_id = pr.workspace_id and m.user_id = p.user_id
"""


class PostgresEditorSessions:
    """The project hub's ``EditorSessionStore`` on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, user_id: uuid.UUID, project_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(SELECT_EDITOR_SESSION, user_id, project_id)
        if row is None:
            return None
        return {
            "open_files": row["open_files"] or [],
            "active_file_id": str(row["active_file_id"]) if row["active_file_id"] else None,
            "layout_state": row["layout_state"] or {},
            "last_active_at": row["last_active_at"].isoformat(),
        }

    async def save(
        self, user_id: uuid.UUID, project_id: uuid.UUID, state: dict[str, Any]
    ) -> None:
        open_files: list[dict[str, Any]] = list(state.get("open_files") or [])
        active = state.get("active_file_id")
        wanted = {uuid.UUID(f["file_id"]) for f in open_files}
        if active:
            wanted.add(uuid.UUID(active))
        async with self.db.service() as conn:
            rows = await conn.fetch(SELECT_PROJECT_FILE_IDS, project_id, list(wanted))
            known = {str(r["id"]) for r in rows}
            kept = [f for f in open_files if f["file_id"] in known]
            await conn.execute(
                UPSERT_EDITOR_SESSION,
                user_id,
                project_id,
                kept,
                uuid.UUID(active) if active and active in known else None,
                state.get("layout_state") or {},
            )

    async def project_roles(
        self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[uuid.UUID, uuid.UUID], str | None]:
        """Each (user, project)'s workspace role now; missing or None: no access."""
        if not pairs:
            return {}
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                SELECT_PROJECT_ROLES, [u for u, _ in pairs], [p for _, p in pairs]
            )
        return {(r["user_id"], r["project_id"]): r["role"] for r in rows}
