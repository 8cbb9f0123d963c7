"""The one-statement hot reads (persistence/hot_reads.py, sql/0270): the check runs as the
service, the read as the user under RLS, and nothing of the user's context outlives the
statement on the pooled connection."""

from __future__ import annotations

import uuid

import asyncpg

from persistence import hot_reads
from persistence.db import Database
from tests.support import factories

# A policy RLS combines with the others by AND: files named secret.py are hidden from every
# user. The check (as the service) still finds them: only a read that really runs as the
# user under RLS misses them.
HIDE_SECRETS = """
create policy hide_secrets on public.files as restrictive for select to authenticated
using (name <> 'secret.py')
"""


async def _world(conn: asyncpg.Connection) -> dict[str, uuid.UUID]:
    owner = await factories.create_user(conn)
    viewer = await factories.create_user(conn)
    outsider = await factories.create_user(conn)
    workspace = await factories.create_workspace(conn, owner)
    await factories.add_member(conn, workspace, viewer, "viewer")
    project = await factories.create_project(conn, workspace)
    plain = await factories.create_file(conn, project, "src/a.py", "print(1)\n")
    secret = await factories.create_file(conn, project, "src/secret.py", "key = 1\n")
    return {"owner": owner, "viewer": viewer, "outsider": outsider, "workspace": workspace,
            "project": project, "plain": plain, "secret": secret}


async def _is_service(conn: asyncpg.Connection, service_role: str) -> bool:
    return bool(
        await conn.fetchval("select current_user") == service_role
        and not conn.is_in_transaction()
        and not await conn.fetchval("select current_setting('request.jwt.claim.sub', true)")
    )


async def test_file_read_checks_as_the_service_and_reads_under_rls(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=1)  # one connection
    try:
        async with db.acquire() as conn:
            ids = await _world(conn)
            await conn.execute(HIDE_SECRETS)
            service_role = await conn.fetchval("select current_user")
            viewer = str(ids["viewer"])

            row = await hot_reads.read_file(conn, ids["plain"], viewer)
            assert row["access_role"] == "viewer"
            assert row["access_project_id"] == ids["project"]
            assert row["access_workspace_id"] == ids["workspace"]
            assert row["logged"] is False
            file = hot_reads.read_columns(row, len(hot_reads.ACCESS_COLUMNS) + 1)
            assert file is not None
            assert file["content"] == "print(1)\n" and file["path"] == "src/a.py"
            assert "access_role" not in file and "logged" not in file
            assert await _is_service(conn, service_role)

            # The check sees the hidden file; the read, made as the user, does not.
            row = await hot_reads.read_file(conn, ids["secret"], viewer)
            assert row["access_role"] == "viewer"
            assert hot_reads.read_columns(row, len(hot_reads.ACCESS_COLUMNS) + 1) is None

            # An outsider: the file's workspace and project, no role, nothing read.
            row = await hot_reads.read_file(conn, ids["plain"], str(ids["outsider"]))
            assert (row["access_workspace_id"], row["access_role"]) == (ids["workspace"], None)
            assert row["id"] is None and row["content"] is None

            # No such file: all null.
            row = await hot_reads.read_file(conn, uuid.uuid4(), viewer)
            assert row["access_workspace_id"] is None and row["id"] is None
            assert await _is_service(conn, service_role)

            # Inside a caller's transaction the user's context lasts to its end, as in
            # Database.as_user.
            async with conn.transaction():
                await hot_reads.read_file(conn, ids["plain"], viewer)
                assert await conn.fetchval("select current_user") == "authenticated"
                assert await conn.fetchval("select auth.uid()") == ids["viewer"]
            assert await _is_service(conn, service_role)
    finally:
        await db.close()


async def test_tree_listing_pages_under_rls(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        async with db.acquire() as conn:
            ids = await _world(conn)
            await conn.execute(HIDE_SECRETS)
            await factories.create_file(conn, ids["project"], "src/b.py", "")
            service_role = await conn.fetchval("select current_user")
            viewer = str(ids["viewer"])

            access, files = await hot_reads.list_files(conn, ids["project"], viewer, False,
                                                       None, 10)
            assert (access["access_project_id"], access["access_role"]) == (
                ids["project"], "viewer")
            # The folder src, then its files in path order; secret.py hidden by RLS.
            assert [f["path"] for f in files] == ["src", "src/a.py", "src/b.py"]
            assert "access_role" not in files[0] and "content" not in files[0]

            _, files = await hot_reads.list_files(
                conn, ids["project"], viewer, False, (files[1]["path"], files[1]["id"]), 10)
            assert [f["path"] for f in files] == ["src/b.py"]
            _, files = await hot_reads.list_files(conn, ids["project"], viewer, False, None, 1)
            assert [f["path"] for f in files] == ["src"]

            access, files = await hot_reads.list_files(
                conn, ids["project"], str(ids["outsider"]), False, None, 10)
            assert access["access_role"] is None and files == []
            access, files = await hot_reads.list_files(conn, uuid.uuid4(), viewer, False,
                                                       None, 10)
            assert access["access_project_id"] is None and files == []
            assert await _is_service(conn, service_role)
    finally:
        await db.close()


async def test_project_open_touches_for_members_only(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        async with db.acquire() as conn:
            ids = await _world(conn)
            service_role = await conn.fetchval("select current_user")
            touched = "select last_accessed_at from public.projects where id = $1"
            old = "update public.projects set last_accessed_at = now() - interval '1 day'"
            await conn.execute(old)
            before = await conn.fetchval(touched, ids["project"])

            row = await hot_reads.open_project(conn, ids["project"], str(ids["outsider"]))
            assert row["access_workspace_id"] == ids["workspace"]
            assert row["access_role"] is None and row["id"] is None
            assert await conn.fetchval(touched, ids["project"]) == before

            row = await hot_reads.open_project(conn, ids["project"], str(ids["viewer"]))
            assert row["access_role"] == "viewer"
            project = hot_reads.read_columns(row, len(hot_reads.ACCESS_COLUMNS))
            assert project is not None and project["id"] == ids["project"]
            assert project["last_accessed_at"] > before
            assert project["last_accessed_at"] == await conn.fetchval(touched, ids["project"])

            row = await hot_reads.open_project(conn, uuid.uuid4(), str(ids["viewer"]))
            assert row["access_workspace_id"] is None and row["access_project_id"] is None
            assert await _is_service(conn, service_role)
    finally:
        await db.close()
