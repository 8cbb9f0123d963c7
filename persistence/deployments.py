"""Deployments (seed table + 0190) and releases (0191): the queries, as named constants.

Status moves pending -> building -> deploying -> success | failed, and to canceled from any
unfinished state; every transition is a conditional update, so a cancel and a build that
race end in exactly one final state.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

UNFINISHED = ("pending", "building", "deploying")
FINISHED = ("success", "failed", "canceled")
COLUMNS = """id, project_id, environment, status, commit_sha, branch, deploy_url, build_time_ms,
deployed_by, deployed_at, created_at, target, job_id, external_id, error, finished_at"""

INSERT = f"""
insert into public.deployments (project_id, environment, status, target, deployed_by,
                                commit_sha, branch)
values ($1, $2, 'pending', $3, $4, $5, $6)
on conflict (project_id, environment, target)
  where status in ('pending', 'building', 'deploying') do nothing
returning {COLUMNS}
"""
UNFINISHED_ONE = f"""
select {COLUMNS} from public.deployments
where project_id = $1 and environment = $2 and target = $3
  and status in ('pending', 'building', 'deploying')
"""
SET_JOB = "update public.deployments set job_id = $2 where id = $1"
GET = f"select {COLUMNS}, logs from public.deployments where id = $1 and project_id = $2"
GET_ANY = f"select {COLUMNS}, logs from public.deployments where id = $1"
LIST = f"""
select {COLUMNS} from public.deployments
where project_id = $1 and ($2::text is null or environment = $2)
  and ($3::timestamptz is null or (created_at, id) < ($3, $4))
order by created_at desc, id desc
limit $5
"""
STATUS = "select status from public.deployments where id = $1"
# A transition happens only from the states given: false when it lost a race (canceled).
ADVANCE = """
update public.deployments set status = $2, logs = coalesce($4, logs)
where id = $1 and status = any($3::text[])
returning id
"""
FINISH = """
update public.deployments
set status = $2, logs = $3, error = $4, build_time_ms = $5, deploy_url = coalesce($6, deploy_url),
    external_id = coalesce($7, external_id),
    deployed_at = case when $2 = 'success' then now() else deployed_at end,
    finished_at = now()
where id = $1 and status in ('pending', 'building', 'deploying')
returning id
"""
SAVE_LOGS = "update public.deployments set logs = $2 where id = $1"
CANCEL = f"""
update public.deployments set status = 'canceled', finished_at = now(),
       logs = coalesce(logs, '') || $3
where id = $1 and project_id = $2 and status in ('pending', 'building', 'deploying')
returning {COLUMNS}
"""
REPOSITORY = """
select coalesce(base_commit, null) as commit_sha, default_branch as branch
from public.git_repositories where project_id = $1
"""
INSERT_RELEASE = """
insert into public.deployment_releases
  (project_id, environment, deployment_id, previous_deployment_id, action, released_by)
values ($1, $2, $3, $4, $5, $6)
returning id, project_id, environment, deployment_id, previous_deployment_id, action,
          released_by, created_at
"""
CURRENT_RELEASE = """
select id, deployment_id, previous_deployment_id, action, created_at
from public.deployment_releases
where project_id = $1 and environment = $2
order by created_at desc, id desc limit 1
"""
RELEASES = """
select id, project_id, environment, deployment_id, previous_deployment_id, action, released_by,
       created_at
from public.deployment_releases
where project_id = $1 and environment = $2
order by created_at desc, id desc limit $3
"""
PROJECT_WORKSPACE = "select workspace_id from public.projects where id = $1"


async def create(conn: asyncpg.Connection, *, project_id: uuid.UUID, environment: str,
                 target: str, user_id: uuid.UUID | None) -> tuple[dict[str, Any], bool]:
    """The new pending deployment (True), or the unfinished one already there (False)."""
    repo = await conn.fetchrow(REPOSITORY, project_id)
    row = await conn.fetchrow(INSERT, project_id, environment, target, user_id,
                              repo["commit_sha"] if repo else None,
                              repo["branch"] if repo else None)
    if row is not None:
        return dict(row), True
    existing = await conn.fetchrow(UNFINISHED_ONE, project_id, environment, target)
    assert existing is not None  # the conflict was with it
    return dict(existing), False


async def set_job(conn: asyncpg.Connection, deployment_id: uuid.UUID, job_id: uuid.UUID) -> None:
    await conn.execute(SET_JOB, deployment_id, job_id)


async def get(conn: asyncpg.Connection, project_id: uuid.UUID,
              deployment_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET, deployment_id, project_id)
    return dict(row) if row else None


async def get_any(conn: asyncpg.Connection, deployment_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(GET_ANY, deployment_id)
    return dict(row) if row else None


async def list_for(conn: asyncpg.Connection, project_id: uuid.UUID, environment: str | None,
                   after: tuple[Any, uuid.UUID] | None, limit: int) -> list[dict[str, Any]]:
    at, last = after if after else (None, None)
    return [dict(r) for r in await conn.fetch(LIST, project_id, environment, at, last, limit)]


async def status(conn: asyncpg.Connection, deployment_id: uuid.UUID) -> str | None:
    value: str | None = await conn.fetchval(STATUS, deployment_id)
    return value


async def advance(conn: asyncpg.Connection, deployment_id: uuid.UUID, to: str,
                  from_states: tuple[str, ...], logs: str | None = None) -> bool:
    return await conn.fetchval(ADVANCE, deployment_id, to, list(from_states), logs) is not None


async def finish(conn: asyncpg.Connection, deployment_id: uuid.UUID, *, status: str, logs: str,
                 error: str | None, build_time_ms: int | None, url: str | None = None,
                 external_id: str | None = None) -> bool:
    return await conn.fetchval(FINISH, deployment_id, status, logs, error, build_time_ms, url,
                               external_id) is not None


async def save_logs(conn: asyncpg.Connection, deployment_id: uuid.UUID, logs: str) -> None:
    await conn.execute(SAVE_LOGS, deployment_id, logs)


async def cancel(conn: asyncpg.Connection, project_id: uuid.UUID, deployment_id: uuid.UUID,
                 note: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(CANCEL, deployment_id, project_id, note)
    return dict(row) if row else None


async def add_release(conn: asyncpg.Connection, *, project_id: uuid.UUID, environment: str,
                      deployment_id: uuid.UUID, action: str,
                      user_id: uuid.UUID | None) -> dict[str, Any]:
    current = await conn.fetchrow(CURRENT_RELEASE, project_id, environment)
    previous = current["deployment_id"] if current else None
    row = await conn.fetchrow(INSERT_RELEASE, project_id, environment, deployment_id,
                              previous if previous != deployment_id else None, action, user_id)
    assert row is not None
    return dict(row)


async def current_release(conn: asyncpg.Connection, project_id: uuid.UUID,
                          environment: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(CURRENT_RELEASE, project_id, environment)
    return dict(row) if row else None


async def releases(conn: asyncpg.Connection, project_id: uuid.UUID, environment: str,
                   limit: int = 20) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(RELEASES, project_id, environment, limit)]


async def workspace_of(conn: asyncpg.Connection, project_id: uuid.UUID) -> uuid.UUID | None:
    value: uuid.UUID | None = await conn.fetchval(PROJECT_WORKSPACE, project_id)
    return value
