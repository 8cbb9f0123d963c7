"""A workspace with one user per role (plus an outsider), built fast through the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from persistence.db import Database
from tests.api.client import Api, User
from tests.support import factories

ROLES = ("owner", "admin", "member", "viewer")


@dataclass
class World:
    users: dict[str, User]  # owner, admin, member, viewer, outsider
    workspace_id: uuid.UUID
    project_id: uuid.UUID
    folder_id: uuid.UUID
    file_id: uuid.UUID
    conversation_id: uuid.UUID
    execution_id: uuid.UUID


async def build_world(api: Api, db: Database) -> World:
    users = {name: await api.sign_up(f"{name}-{uuid.uuid4().hex[:6]}@example.test")
             for name in (*ROLES, "outsider")}
    owner = users["owner"]
    ws = await api.ok("POST", "/workspaces", {"name": "Matrix"}, token=owner.token)
    workspace_id = uuid.UUID(ws["id"])
    async with db.service() as conn:
        for role in ROLES[1:]:
            await factories.add_member(conn, workspace_id, uuid.UUID(users[role].id), role)
        project_id = await factories.create_project(conn, workspace_id)
        file_id = await factories.create_file(
            conn, project_id, "src/main.py", "print('hi')\n", created_by=uuid.UUID(owner.id)
        )
        folder_id = await conn.fetchval(
            "select id from public.files where project_id = $1 and path = 'src'", project_id
        )
        await conn.execute(
            "insert into public.file_versions (file_id, version_number, content, size_bytes)"
            " values ($1, 1, 'v1', 2)",
            file_id,
        )
        conversation_id = await factories.create_conversation(
            conn, project_id, uuid.UUID(owner.id), "Owner's chat"
        )
        await conn.execute(
            "insert into public.messages (conversation_id, role, content)"
            " values ($1, 'user', 'hi')",
            conversation_id,
        )
        execution_id = await conn.fetchval(
            "insert into public.code_executions (user_id, project_id, language, source_code,"
            " status, stdout, exit_code) values ($1, $2, 'python', 'print(1)', 'Accepted',"
            " '1\n', 0) returning id",
            uuid.UUID(owner.id), project_id,
        )
    return World(
        users, workspace_id, project_id, folder_id, file_id, conversation_id, execution_id
    )
