"""Key rotation: the re-encryption job moves every secret under the newest key, once."""

from __future__ import annotations

import base64
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from gitsync.sync import credentials_context, webhook_context
from jobs import Worker, WorkerConfig
from persistence import environment, integrations
from persistence import git as git_store
from persistence import oauth as oauth_store
from persistence.crypto import Keyring, parse_key
from persistence.db import Database
from persistence.reencrypt import reencrypt_all
from server.secret_jobs import REENCRYPT, queue_reencryption, secret_jobs
from server.settings import Settings
from tests.jobs.procs import eventually
from tests.support import factories

OLD = "old-1:" + base64.b64encode(os.urandom(32)).decode()
NEW = "new-2:" + base64.b64encode(os.urandom(32)).decode()
ALL_SECRETS = """
select 'oauth_connections.access_token:' || id as context, access_token as value
  from public.oauth_connections
union all select 'oauth_connections.refresh_token:' || id, refresh_token
  from public.oauth_connections
union all select 'api_integrations.api_key_encrypted:' || id, api_key_encrypted
  from public.api_integrations
union all select 'environment_variables.value_encrypted:' || id, value_encrypted
  from public.environment_variables
union all select 'git_repositories.credentials_encrypted:' || id, credentials_encrypted
  from public.git_repositories
union all select 'git_repositories.webhook_secret_encrypted:' || id, webhook_secret_encrypted
  from public.git_repositories
"""


async def _seed(db: Database, keyring: Keyring) -> dict[str, str]:
    """One secret of each kind (and 250 variables: more than a batch), under ``keyring``."""
    plain: dict[str, str] = {}
    async with db.service() as conn:
        user = await factories.create_user(conn)
        ws = await factories.create_workspace(conn, user)
        project = await factories.create_project(conn, ws)
        await oauth_store.save_connection(
            conn, keyring, user_id=user, provider="gitlab", provider_user_id="42",
            tokens=oauth_store.TokenSet("gl-access", "gl-refresh",
                                        datetime.now(UTC) + timedelta(hours=1), ["read_user"]),
            metadata={},
        )
        await integrations.save_workspace_key(
            conn, keyring, workspace_id=ws, user_id=user, provider="openai",
            api_key="sk-rotate-me", config={})
        for i in range(250):
            await environment.insert_variable(
                conn, keyring, project_id=project, key=f"K{i}", value=f"value-{i}",
                environment="development", is_secret=True, created_by=user)
        repo = await git_store.insert_repository(
            conn, project, provider="github", repo_url="https://github.com/a/b",
            full_name="a/b", default_branch="main", auth_source="token", username="x",
            connected_by=user)
        assert repo is not None
        await git_store.set_secrets(
            conn, repo["id"], keyring.encrypt("ghp_token", credentials_context(repo["id"])),
            keyring.encrypt("hook-secret", webhook_context(repo["id"])))
    async with db.acquire() as conn:
        for row in await conn.fetch(ALL_SECRETS):
            plain[row["context"]] = keyring.decrypt(row["value"], row["context"])
    return plain


async def _stored(db: Database) -> dict[str, str]:
    async with db.acquire() as conn:
        return {r["context"]: r["value"] for r in await conn.fetch(ALL_SECRETS)}


async def test_every_secret_moves_to_the_newest_key_once(db: Database) -> None:
    old = Keyring([parse_key(OLD)])
    plain = await _seed(db, old)
    rotated = Keyring([parse_key(NEW), parse_key(OLD)])
    report = await reencrypt_all(db, rotated, batch=100)
    assert report.failed == 0
    assert report.reencrypted == {"oauth_connections": 1, "api_integrations": 1,
                                  "environment_variables": 250, "git_repositories": 1}
    only_new = Keyring([parse_key(NEW)])
    stored = await _stored(db)
    assert len(stored) == len(plain) == 255
    for context, value in stored.items():
        assert value.startswith("v1:new-2:")
        assert only_new.decrypt(value, context) == plain[context]
    again = await reencrypt_all(db, rotated)
    assert again.reencrypted == {"oauth_connections": 0, "api_integrations": 0,
                                 "environment_variables": 0, "git_repositories": 0}
    assert await _stored(db) == stored


async def test_a_value_no_key_opens_is_reported_and_left(db: Database) -> None:
    lost = Keyring([parse_key("lost:" + base64.b64encode(os.urandom(32)).decode())])
    async with db.service() as conn:
        user = await factories.create_user(conn)
        project = await factories.create_project(conn, await factories.create_workspace(conn, user))
        row = await environment.insert_variable(
            conn, lost, project_id=project, key="GONE", value="x", environment="development",
            is_secret=True, created_by=user)
    report = await reencrypt_all(db, Keyring([parse_key(NEW)]))
    assert report.failed == 1 and report.reencrypted["environment_variables"] == 0
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "select value_encrypted from public.environment_variables where id = $1",
            row["id"]) == row["value_encrypted"]


async def test_the_job_runs_on_the_queue(
    db: Database, database_url: str, settings: Settings
) -> None:
    await _seed(db, Keyring([parse_key(OLD)]))
    rotated = dataclasses.replace(settings, encryption_keys=(NEW, OLD))
    jobs = [j for j in secret_jobs(rotated) if j.name == REENCRYPT]
    async with db.service() as conn:
        await queue_reencryption(conn, jobs)
        await queue_reencryption(conn, jobs)  # deduplicated while the first is queued
        assert await conn.fetchval(
            "select count(*) from public.background_jobs where job_name = $1 "
            "and period_start is null", REENCRYPT) == 1
    worker = Worker(db, jobs, dsn=database_url, config=WorkerConfig(lease_s=5))
    await worker.start()

    async def done() -> Any:
        async with db.acquire() as conn:
            return await conn.fetchval(
                "select output from public.background_jobs where job_name = $1 "
                "and status = 'completed' and period_start is null", REENCRYPT)

    try:
        output = await eventually(done, 30, "the re-encryption job")
    finally:
        await worker.stop()
    assert output["key_id"] == "new-2" and output["failed"] == 0
    assert output["reencrypted"]["environment_variables"] == 250
    assert all(v.startswith("v1:new-2:") for v in (await _stored(db)).values())
