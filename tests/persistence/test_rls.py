"""Row-level security: who sees and writes what, driven table by table from the catalog."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from persistence.db import Database
from tests.support import factories

# Seed tables whose rows belong to a user or a workspace; a world gives each one row.
WORLD_SQL: dict[str, tuple[str, tuple[str, ...]]] = {
    "oauth_connections": (
        "insert into public.oauth_connections (user_id, provider, provider_user_id,"
        " access_token) values ($1, 'github', 'gh-' || $2, 'ciphertext') returning id",
        ("user", "token")),
    "user_sessions_extended": (
        "insert into public.user_sessions_extended (user_id, ip_address, browser)"
        " values ($1, '127.0.0.1', 'Firefox') returning id", ("user",)),
    "customers": (
        "insert into public.customers (user_id, stripe_customer_id)"
        " values ($1, 'cus_' || $2) returning id", ("user", "token")),
    "subscriptions": (
        "insert into public.subscriptions (customer_id, plan_id, stripe_subscription_id, status,"
        " billing_interval, current_period_start, current_period_end)"
        " values ($1, $2, 'sub_' || $3, 'active', 'monthly', now(), now() + interval '1 month')"
        " returning id", ("customers", "plan", "token")),
    "invoices": (
        "insert into public.invoices (customer_id, stripe_invoice_id, amount_due, status)"
        " values ($1, 'in_' || $2, 1200, 'paid') returning id", ("customers", "token")),
    "usage_records": (
        "insert into public.usage_records (user_id, workspace_id, resource_type, amount, unit)"
        " values ($1, $2, 'ai_tokens', 120, 'tokens') returning id", ("user", "workspaces")),
    "messages": (
        "insert into public.messages (conversation_id, role, content)"
        " values ($1, 'user', 'hello') returning id", ("conversations",)),
    "ai_jobs": (
        "insert into public.ai_jobs (user_id, project_id, job_type, input)"
        " values ($1, $2, 'explain', '{}') returning id", ("user", "projects")),
    "code_analyses": (
        "insert into public.code_analyses (project_id, file_path, analysis_type, result)"
        " values ($1, '/src/main.py', 'explain', '{}') returning id", ("projects",)),
    "file_versions": (
        "insert into public.file_versions (file_id, version_number, content, changed_by)"
        " values ($1, 1, 'print(1)', $2) returning id", ("files", "user")),
    "editor_sessions": (
        "insert into public.editor_sessions (user_id, project_id) values ($1, $2) returning id",
        ("user", "projects")),
    "terminal_sessions": (
        "insert into public.terminal_sessions (user_id, project_id, command)"
        " values ($1, $2, 'ls') returning id", ("user", "projects")),
    "git_repositories": (
        "insert into public.git_repositories (project_id, provider, repo_url)"
        " values ($1, 'github', 'https://example.test/r.git') returning id", ("projects",)),
    "code_executions": (
        "insert into public.code_executions (user_id, project_id, language, source_code, status)"
        " values ($1, $2, 'python', 'print(1)', 'accepted') returning id", ("user", "projects")),
    "api_logs": (
        "insert into public.api_logs (user_id, endpoint, method, status_code)"
        " values ($1, '/api/v1/x', 'GET', 200) returning id", ("user",)),
    "error_logs": (
        "insert into public.error_logs (user_id, project_id, error_type, message)"
        " values ($1, $2, 'TypeError', 'boom') returning id", ("user", "projects")),
    "analytics_events": (
        "insert into public.analytics_events (user_id, workspace_id, event_name, event_category)"
        " values ($1, $2, 'open_file', 'editor') returning id", ("user", "workspaces")),
    "api_integrations": (
        "insert into public.api_integrations (user_id, workspace_id, provider, api_key_encrypted)"
        " values ($1, $2, 'openai', 'ciphertext') returning id", ("user", "workspaces")),
    "deployments": (
        "insert into public.deployments (project_id, environment, status, deployed_by)"
        " values ($1, 'production', 'success', $2) returning id", ("projects", "user")),
    "environment_variables": (
        "insert into public.environment_variables (project_id, key, value_encrypted,"
        " environment, created_by) values ($1, 'API_KEY', 'ciphertext', 'all', $2) returning id",
        ("projects", "user")),
}
GLOBAL_SQL = {
    "background_jobs": "insert into public.background_jobs (job_name, job_type, input)"
                       " values ('sync', 'sync', '{}')",
    "performance_metrics": "insert into public.performance_metrics (metric_name, metric_type,"
                           " value, unit) values ('p95', 'api_latency', 12.5, 'ms')",
    "webhook_logs": "insert into public.webhook_logs (provider, event_type, payload)"
                    " values ('stripe', 'invoice.paid', '{}')",
}
# Users may append to these and not read them back: the world's api_logs row names no
# workspace, so only an operator reads it (0087). Its error_logs and analytics_events rows are
# in the owner's workspace (and their own): the owner, an admin+, reads them.
INSERT_ONLY = {"api_logs"}
# Tables whose rows point into a workspace (directly or through a project, file, ...).
SCOPE_COLUMNS = ("workspace_id", "project_id", "conversation_id", "file_id", "customer_id")
USER_COLUMNS = ("user_id", "owner_id", "created_by", "updated_by", "changed_by", "deployed_by")
# Project content a viewer reads but must not write.
VIEWER_READ_ONLY = ("projects", "files", "file_versions", "conversations", "messages",
                    "code_analyses", "git_repositories", "deployments", "workspaces")

USER_TABLES = """
select c.relname from pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
order by 1
"""


@dataclass
class World:
    """One user's workspace with a row in every seed table that can belong to someone."""

    user: uuid.UUID
    rows: dict[str, uuid.UUID] = field(default_factory=dict)


async def build_world(conn: asyncpg.Connection, plan: uuid.UUID) -> World:
    user = await factories.create_user(conn)
    world = World(user, {"users": user})
    world.rows["workspaces"] = await factories.create_workspace(conn, user)
    world.rows["workspace_members"] = await conn.fetchval(
        "select id from public.workspace_members where workspace_id = $1",
        world.rows["workspaces"],
    )
    world.rows["projects"] = await factories.create_project(conn, world.rows["workspaces"])
    world.rows["files"] = await factories.create_file(
        conn, world.rows["projects"], "/src/main.py", "print(1)", created_by=user
    )
    world.rows["conversations"] = await factories.create_conversation(
        conn, world.rows["projects"], user
    )
    values = {"user": user, "plan": plan}
    for table, (sql, params) in WORLD_SQL.items():
        args = [values.get(p) or world.rows.get(p) or uuid.uuid4().hex[:10] for p in params]
        world.rows[table] = await conn.fetchval(sql, *args)
    return world


@pytest.fixture
async def worlds(db: Database) -> tuple[World, World]:
    async with db.service() as conn:
        # The plans are seeded by sql/0170_billing_plans.
        plan = await conn.fetchval("select id from public.subscription_plans where slug = 'pro'")
        for sql in GLOBAL_SQL.values():
            await conn.execute(sql)
        return await build_world(conn, plan), await build_world(conn, plan)


async def _denied(conn: asyncpg.Connection, sql: str, *args: Any) -> bool:
    """True when the statement fails for lack of privilege (RLS check or grant)."""
    try:
        async with conn.transaction():
            await conn.execute(sql, *args)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def _count(conn: asyncpg.Connection, table: str, row_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(f"select count(*) from public.{table} where id = $1", row_id)
    return count


async def _copy_row(db: Database, table: str, row_id: uuid.UUID,
                    user: uuid.UUID | None) -> tuple[str, list[Any]]:
    """An insert of a copy of the row (new id); user columns set to ``user`` if given."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(f"select * from public.{table} where id = $1", row_id)
        types: dict[str, str] = {r[0]: r[1] for r in await conn.fetch(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = $1::text::regclass and attnum > 0 and not attisdropped",
            f"public.{table}",
        )}
    assert row is not None
    data = dict(row)
    data["id"] = uuid.uuid4()
    if user is not None:
        for column in USER_COLUMNS:
            if column in data:
                data[column] = user
    columns = list(data)
    casts = ", ".join(f"${i + 1}::{types[c]}" for i, c in enumerate(columns))
    sql = f"insert into public.{table} ({', '.join(columns)}) values ({casts})"
    return sql, [json.dumps(v) if types[c] == "jsonb" else v for c, v in data.items()]


async def test_users_cannot_read_or_write_each_others_rows_in_any_table(
    db: Database, worlds: tuple[World, World]
) -> None:
    problems: list[str] = []
    for me, other in (worlds, worlds[::-1]):
        assert set(other.rows) >= set(WORLD_SQL)
        for table, row_id in other.rows.items():
            copy_as_is = await _copy_row(db, table, row_id, None)
            copy_as_me = await _copy_row(db, table, row_id, me.user)
            async with db.as_user(str(me.user)) as conn:
                if await _count(conn, table, row_id):
                    problems.append(f"{table}: reads the other user's row")
                if await conn.execute(f"update public.{table} set id = id where id = $1",
                                      row_id) != "UPDATE 0":
                    problems.append(f"{table}: updates the other user's row")
                if await conn.execute(f"delete from public.{table} where id = $1",
                                      row_id) != "DELETE 0":
                    problems.append(f"{table}: deletes the other user's row")
                if not await _denied(conn, copy_as_is[0], *copy_as_is[1]):
                    problems.append(f"{table}: inserts a row as the other user")
                scoped = any(copy_as_me[1][i] is not None
                             for i, c in enumerate(_columns_of(copy_as_me[0]))
                             if c in SCOPE_COLUMNS) or table in ("users", "workspaces")
                if (scoped and table != "workspaces"
                        and not await _denied(conn, copy_as_me[0], *copy_as_me[1])):
                    problems.append(f"{table}: inserts its own row into the other's workspace")
        # Positive control: the owner reads their own rows (so the checks above mean something).
        async with db.as_user(str(me.user)) as conn:
            for table, row_id in me.rows.items():
                expected = 0 if table in INSERT_ONLY else 1
                if await _count(conn, table, row_id) != expected:
                    problems.append(f"{table}: owner sees {1 - expected} of their own rows")
    assert problems == []


def _columns_of(insert_sql: str) -> list[str]:
    return insert_sql.split("(", 1)[1].split(")", 1)[0].split(", ")


async def test_a_stranger_sees_only_themselves_and_the_plans_in_every_table(
    db: Database, worlds: tuple[World, World]
) -> None:
    async with db.service() as conn:
        stranger = await factories.create_user(conn)
        tables = [r[0] for r in await conn.fetch(USER_TABLES)]
        plans = await conn.fetchval("select count(*) from public.subscription_plans")
    allowed = {"users": 1, "subscription_plans": plans}
    seen: dict[str, int] = {}
    async with db.as_user(str(stranger)) as conn:
        for table in tables:
            try:
                async with conn.transaction():
                    seen[table] = await conn.fetchval(f"select count(*) from public.{table}")
            except asyncpg.InsufficientPrivilegeError:
                seen[table] = 0
    assert {t: n for t, n in seen.items() if n} == allowed
    assert len(tables) >= 31  # the 30 seed tables and schema_migrations, at least


async def test_anon_can_touch_no_application_table(db: Database) -> None:
    async with db.acquire() as conn:
        granted = await conn.fetch(
            "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
            " and c.relkind in ('r', 'p')"
            " and has_table_privilege('anon', c.oid, 'select,insert,update,delete')"
        )
    assert [r[0] for r in granted] == []


@pytest.fixture
async def team(db: Database, worlds: tuple[World, World]) -> dict[str, Any]:
    """The first world's workspace with an admin, a member and a viewer added."""
    owner_world = worlds[0]
    ws = owner_world.rows["workspaces"]
    people: dict[str, Any] = {"world": owner_world, "owner": owner_world.user, "ws": ws}
    async with db.service() as conn:
        for role in ("admin", "member", "viewer"):
            people[role] = await factories.create_user(conn)
            await factories.add_member(conn, ws, people[role], role)
    return people


async def test_a_viewer_reads_project_content_but_cannot_write_it(
    db: Database, team: dict[str, Any]
) -> None:
    world: World = team["world"]
    problems: list[str] = []
    for table in VIEWER_READ_ONLY:
        row_id = world.rows[table]
        insert = await _copy_row(db, table, row_id, team["viewer"])
        async with db.as_user(str(team["viewer"])) as conn:
            if await _count(conn, table, row_id) != 1:
                problems.append(f"{table}: viewer cannot read")
            if await conn.execute(f"update public.{table} set id = id where id = $1",
                                  row_id) != "UPDATE 0":
                problems.append(f"{table}: viewer updates")
            if await conn.execute(f"delete from public.{table} where id = $1",
                                  row_id) != "DELETE 0":
                problems.append(f"{table}: viewer deletes")
            if table != "workspaces" and not await _denied(conn, insert[0], *insert[1]):
                problems.append(f"{table}: viewer inserts")
    async with db.as_user(str(team["viewer"])) as conn:
        for secret in ("environment_variables", "api_integrations"):
            if await _count(conn, secret, world.rows[secret]):
                problems.append(f"{secret}: viewer reads a secret")
    assert problems == []


async def test_members_write_content_and_secrets_stay_with_owners_and_admins(
    db: Database, team: dict[str, Any]
) -> None:
    world: World = team["world"]
    project = world.rows["projects"]
    async with db.as_user(str(team["member"])) as conn:
        file_id = await conn.fetchval(
            "insert into public.files (project_id, path, name, type, content)"
            " values ($1, '/b.py', 'b.py', 'file', '') returning id", project
        )
        assert await conn.execute("update public.files set content = 'x' where id = $1",
                                  file_id) == "UPDATE 1"
        conversation = await conn.fetchval(
            "insert into public.conversations (project_id, user_id) values ($1, $2)"
            " returning id", project, team["member"]
        )
        await conn.execute(
            "insert into public.messages (conversation_id, role, content)"
            " values ($1, 'user', 'hi')", conversation
        )
        # Members list the project's variables (0121; the API never shows secret values)...
        assert await _count(conn, "environment_variables", world.rows["environment_variables"]) == 1
        # ...but not an `all` one's write, nor the workspace's keys or others' connections.
        assert await conn.execute(
            "update public.environment_variables set key = 'X' where id = $1",
            world.rows["environment_variables"]) == "UPDATE 0"
        assert await _count(conn, "api_integrations", world.rows["api_integrations"]) == 0
        assert await _count(conn, "oauth_connections", world.rows["oauth_connections"]) == 0
        assert await _denied(conn, "delete from public.projects where id = $1", project) is False
        assert await _count(conn, "projects", project) == 1  # members cannot delete projects
    async with db.as_user(str(team["admin"])) as conn:
        assert await _count(conn, "environment_variables", world.rows["environment_variables"]) == 1
        assert await _count(conn, "api_integrations", world.rows["api_integrations"]) == 1
        assert await _count(conn, "oauth_connections", world.rows["oauth_connections"]) == 0


async def test_only_owners_and_admins_manage_members(db: Database, team: dict[str, Any]) -> None:
    ws = team["ws"]
    update_role = (
        "update public.workspace_members set role = $3 where workspace_id = $1 and user_id = $2"
    )
    async with db.service() as conn:
        newcomer = await factories.create_user(conn)
    add = ("insert into public.workspace_members (workspace_id, user_id, role)"
           " values ($1, $2, $3)")

    async with db.as_user(str(team["member"])) as conn:
        assert await conn.execute(update_role, ws, team["member"], "admin") == "UPDATE 0"
        assert await conn.execute(update_role, ws, team["viewer"], "member") == "UPDATE 0"
        assert await _denied(conn, add, ws, newcomer, "viewer")
        assert await conn.execute(
            "delete from public.workspace_members where workspace_id = $1 and user_id = $2",
            ws, team["viewer"]) == "DELETE 0"
    async with db.as_user(str(team["viewer"])) as conn:
        assert await conn.execute(update_role, ws, team["viewer"], "owner") == "UPDATE 0"

    async with db.as_user(str(team["admin"])) as conn:
        assert await conn.execute(update_role, ws, team["viewer"], "member") == "UPDATE 1"
        assert await _denied(conn, update_role, ws, team["viewer"], "owner")
        assert await conn.execute(update_role, ws, team["owner"], "viewer") == "UPDATE 0"
        assert await _denied(conn, add, ws, newcomer, "owner")
        await conn.execute(add, ws, newcomer, "viewer")
        assert await conn.execute(
            "delete from public.workspace_members where workspace_id = $1 and user_id = $2",
            ws, team["owner"]) == "DELETE 0"

    delete_member = (
        "delete from public.workspace_members where workspace_id = $1 and user_id = $2"
    )
    # The last owner can neither leave nor be demoted; after a handover they can.
    async with db.as_user(str(team["owner"])) as conn:
        assert await conn.execute(delete_member, ws, team["owner"]) == "DELETE 0"
        assert await _denied(conn, update_role, ws, team["owner"], "admin")
        locked = await conn.fetch(
            "select user_id from public.workspace_members where workspace_id = $1"
            " and role = 'owner' for update", ws)
        assert [r[0] for r in locked] == [team["owner"]]
        assert await conn.execute(update_role, ws, team["admin"], "owner") == "UPDATE 1"
    async with db.as_user(str(team["admin"])) as conn:  # now a co-owner
        assert await conn.execute(update_role, ws, team["owner"], "admin") == "UPDATE 1"
        assert await conn.execute(update_role, ws, team["owner"], "owner") == "UPDATE 1"
    async with db.as_user(str(team["owner"])) as conn:
        assert await conn.execute(delete_member, ws, team["owner"]) == "DELETE 1"
    async with db.as_user(str(team["admin"])) as conn:  # the only owner left
        assert await conn.execute(delete_member, ws, team["admin"]) == "DELETE 0"

    # A member leaves on their own.
    async with db.as_user(str(team["member"])) as conn:
        assert await conn.execute(delete_member, ws, team["member"]) == "DELETE 1"


async def test_any_user_creates_a_workspace_and_becomes_its_owner(
    db: Database, worlds: tuple[World, World]
) -> None:
    me, other = worlds
    async with db.as_user(str(me.user)) as conn:
        ws = await conn.fetchval(
            "insert into public.workspaces (name, slug, owner_id) values ('Mine', $1, $2)"
            " returning id", f"mine-{uuid.uuid4().hex[:8]}", me.user
        )
        await conn.execute(
            "insert into public.workspace_members (workspace_id, user_id, role)"
            " values ($1, $2, 'owner')", ws, me.user
        )
        project = await conn.fetchval(
            "insert into public.projects (workspace_id, name, slug) values ($1, 'P', 'p')"
            " returning id", ws
        )
        assert project is not None
        # Not someone else's workspace, and not an owner row in someone else's workspace.
        assert await _denied(
            conn, "insert into public.workspaces (name, slug, owner_id) values ('X', 'x-1', $1)",
            other.user)
        assert await _denied(
            conn, "insert into public.workspace_members (workspace_id, user_id, role)"
            " values ($1, $2, 'owner')", other.rows["workspaces"], me.user)
        assert await _denied(
            conn, "insert into public.workspace_members (workspace_id, user_id, role)"
            " values ($1, $2, 'viewer')", other.rows["workspaces"], me.user)


async def test_collaborators_see_each_others_profiles_and_edit_only_their_own(
    db: Database, team: dict[str, Any], worlds: tuple[World, World]
) -> None:
    async with db.as_user(str(team["viewer"])) as conn:
        visible = {r[0] for r in await conn.fetch("select id from public.users")}
        assert visible == {team["owner"], team["admin"], team["member"], team["viewer"]}
        assert await conn.execute("update public.users set bio = 'me' where id = $1",
                                  team["viewer"]) == "UPDATE 1"
        assert await conn.execute("update public.users set bio = 'you' where id = $1",
                                  team["owner"]) == "UPDATE 0"
        assert worlds[1].user not in visible


async def test_every_table_has_rls_and_a_policy(db: Database) -> None:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "select c.relname, c.relrowsecurity,"
            " (select count(*) from pg_policy p where p.polrelid = c.oid) as policies"
            " from pg_class c where c.relnamespace = 'public'::regnamespace"
            " and c.relkind in ('r', 'p') and not c.relispartition"
        )
    assert len(rows) >= 31
    unprotected = [r["relname"] for r in rows if not r["relrowsecurity"] or not r["policies"]]
    assert unprotected == [], (
        "enable row level security and add a policy (a service-only table: `create policy"
        " <t>_service on public.<t> for all to service_role using (true) with check (true)`),"
        " see sql/README.md"
    )


async def test_security_definer_functions_have_a_fixed_search_path(db: Database) -> None:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "select p.oid::regprocedure::text as name, p.proconfig from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace"
            " where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')"
        )
    assert len(rows) >= 10
    unsafe = [r["name"] for r in rows
              if not any(s.startswith("search_path=") for s in (r["proconfig"] or []))]
    assert unsafe == []
