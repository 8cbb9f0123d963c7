"""Opening a project (GET /projects/{id}) records last_accessed_at for members only."""

from __future__ import annotations

import uuid
from datetime import datetime

from persistence.db import Database
from tests.api.client import Api


async def _last_accessed(db: Database, project_id: str) -> datetime | None:
    async with db.service() as conn:
        value: datetime | None = await conn.fetchval(
            "select last_accessed_at from public.projects where id = $1", uuid.UUID(project_id)
        )
        return value


async def test_open_records_last_accessed_for_members_not_outsiders(
    api: Api, db: Database
) -> None:
    owner = await api.sign_up()
    outsider = await api.sign_up()
    ws = await api.ok("POST", "/workspaces", {"name": "Open"}, token=owner.token)
    first = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "First"},
                         token=owner.token)
    second = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "Second"},
                          token=owner.token)
    async with db.service() as conn:
        await conn.execute(
            "update public.projects set last_accessed_at = now() - interval '1 day'"
            " where workspace_id = $1", uuid.UUID(ws["id"]),
        )
    before = await _last_accessed(db, first["id"])
    assert before is not None

    refused = await api.call("GET", f"/projects/{first['id']}", token=outsider.token)
    assert refused.status == 404
    assert await _last_accessed(db, first["id"]) == before
    missing = await api.call("GET", f"/projects/{uuid.uuid4()}", token=owner.token)
    assert missing.status == 404

    opened = await api.ok("GET", f"/projects/{first['id']}", token=owner.token)
    after = await _last_accessed(db, first["id"])
    assert after is not None and after > before
    assert datetime.fromisoformat(opened["last_accessed_at"]) == after  # the read sees it
    listed = await api.ok("GET", f"/workspaces/{ws['id']}/projects", token=owner.token)
    assert [p["id"] for p in listed["items"]][:2] == [first["id"], second["id"]]
