"""Fixtures for document tests against a live server: a workspace, a file, tokens."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import pytest

from collab.config import CollabConfig
from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.support import factories

FAST_COLLAB = CollabConfig(
    log_flush_ms=10, compact_after_s=0.3, idle_unload_s=0.5, gap_repair_s=0.5,
    role_check_s=0.2, version_bucket_s=2.0, max_message_bytes=64 * 1024,
    max_document_bytes=512 * 1024,
)


@dataclass
class DocWorld:
    settings: Settings
    db: Database
    owner: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID

    def token(self, user_id: uuid.UUID, ttl_s: int = 3600) -> str:
        return issue_access_token(self.settings.jwt_secret, str(user_id), None, ttl_s=ttl_s)

    async def new_file(self, content: str = "") -> uuid.UUID:
        async with self.db.service() as conn:
            return await factories.create_file(
                conn, self.project_id, f"src/{uuid.uuid4().hex[:8]}.py", content
            )

    async def new_user(self, role: str | None) -> uuid.UUID:
        async with self.db.service() as conn:
            user = await factories.create_user(conn)
            if role is not None:
                await factories.add_member(conn, self.workspace_id, user, role)
            return user

    async def content(self, file_id: uuid.UUID) -> str | None:
        async with self.db.acquire() as conn:
            value: str | None = await conn.fetchval(
                "select content from public.files where id = $1", file_id
            )
            return value


@pytest.fixture
def doc_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, collab=FAST_COLLAB)


@pytest.fixture
async def world(doc_settings: Settings, db: Database) -> DocWorld:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        workspace_id = await factories.create_workspace(conn, owner)
        project_id = await factories.create_project(conn, workspace_id)
    return DocWorld(doc_settings, db, owner, workspace_id, project_id)
