"""The shared factories build consistent rows (others' tests depend on them)."""

from __future__ import annotations

from persistence.db import Database
from tests.support import factories


async def test_factories_build_a_workspace_with_files(db: Database) -> None:
    async with db.service() as conn:
        owner = await factories.create_user(conn, full_name="Ada Owner")
        viewer = await factories.create_user(conn, "viewer@example.test")
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
        file_id = await factories.create_file(conn, project, "/src/app/main.py", "print('é')",
                                              created_by=owner)
        again = await factories.create_file(conn, project, "/src/app/util.py")
        conversation = await factories.create_conversation(conn, project, owner, "Help")

        assert await conn.fetchval("select full_name from public.users where id = $1", owner) == (
            "Ada Owner"
        )
        roles = {r["user_id"]: r["role"] for r in await conn.fetch(
            "select user_id, role from public.workspace_members where workspace_id = $1", ws
        )}
        assert roles == {owner: "owner", viewer: "viewer"}
        rows = await conn.fetch(
            "select f.path, f.name, f.type, f.size_bytes, p.path as parent"
            " from public.files f left join public.files p on p.id = f.parent_id"
            " where f.project_id = $1 order by f.path", project
        )
        assert [tuple(r) for r in rows] == [
            ("/src", "src", "folder", None, None),
            ("/src/app", "app", "folder", None, "/src"),
            ("/src/app/main.py", "main.py", "file", 11, "/src/app"),
            ("/src/app/util.py", "util.py", "file", 0, "/src/app"),
        ]
        assert file_id != again
        assert await conn.fetchval(
            "select project_id from public.conversations where id = $1", conversation
        ) == project
