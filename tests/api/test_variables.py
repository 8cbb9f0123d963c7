"""Environment variables: CRUD, secrets never read back, encryption at rest, roles and RLS."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from persistence.db import Database
from server.auth.tokens import issue_access_token
from tests.api.client import Api
from tests.conftest import TEST_JWT_SECRET
from tests.support import factories

SECRET = "sk_live_0123456789abcdef"


@dataclass
class Team:
    owner: uuid.UUID
    admin: uuid.UUID
    member: uuid.UUID
    viewer: uuid.UUID
    stranger: uuid.UUID
    project: uuid.UUID

    def path(self, suffix: str = "") -> str:
        return f"/projects/{self.project}/environment-variables{suffix}"


def token(user: uuid.UUID) -> str:
    return issue_access_token(TEST_JWT_SECRET, str(user), f"{user}@example.test")


@pytest.fixture
async def team(db: Database) -> Team:
    async with db.service() as conn:
        owner, admin, member, viewer, stranger = [
            await factories.create_user(conn) for _ in range(5)
        ]
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, admin, "admin")
        await factories.add_member(conn, ws, member, "member")
        await factories.add_member(conn, ws, viewer, "viewer")
        project = await factories.create_project(conn, ws)
    return Team(owner, admin, member, viewer, stranger, project)


async def test_crud_secret_values_are_never_returned(api: Api, team: Team, db: Database) -> None:
    t = token(team.member)
    created = await api.call("POST", team.path(), {
        "key": "STRIPE_KEY", "value": SECRET, "environment": "development"}, token=t)
    assert created.status == 201, created.body
    assert created.body["value"] is None and created.body["masked"] and created.body["is_secret"]
    plain = await api.ok("POST", team.path(), {
        "key": "GREETING", "value": "hello", "environment": "development",
        "is_secret": False}, token=t)
    assert plain["value"] == "hello" and plain["masked"] is None

    listed = await api.ok("GET", team.path(), token=token(team.admin))
    assert [(v["key"], v["value"]) for v in listed["items"]] == [
        ("GREETING", "hello"), ("STRIPE_KEY", None)]
    assert SECRET not in str(listed)
    filtered = await api.call("GET", team.path(), token=t,
                              params={"environment": "staging"})
    assert filtered.body["items"] == []

    async with db.acquire() as conn:
        stored = await conn.fetchval(
            "select value_encrypted from public.environment_variables where key = 'STRIPE_KEY'")
    assert stored.startswith("v1:") and SECRET not in stored

    # A secret stays unreadable: turning it visible needs the value again.
    reveal = await api.call("PATCH", team.path(f"/{created.body['id']}"),
                            {"is_secret": False}, token=t)
    assert reveal.status == 422 and reveal.error_code == "value_required"
    renamed = await api.ok("PATCH", team.path(f"/{created.body['id']}"),
                           {"key": "STRIPE_SECRET", "environment": "staging"}, token=t)
    assert renamed["key"] == "STRIPE_SECRET" and renamed["value"] is None
    shown = await api.ok("PATCH", team.path(f"/{created.body['id']}"),
                         {"is_secret": False, "value": "now-public"}, token=t)
    assert shown["value"] == "now-public"

    dup = await api.call("POST", team.path(), {
        "key": "GREETING", "value": "x", "environment": "development"}, token=t)
    assert dup.status == 409 and dup.error_code == "variable_exists"
    reserved = await api.call("POST", team.path(), {"key": "PATH", "value": "/x"}, token=t)
    assert reserved.status == 422 and reserved.error_code == "reserved_key"
    bad = await api.call("POST", team.path(), {"key": "1BAD", "value": "x"}, token=t)
    assert bad.status == 422

    deleted = await api.call("DELETE", team.path(f"/{plain['id']}"), token=t)
    assert deleted.status == 204
    assert [v["key"] for v in (await api.ok("GET", team.path(), token=t))["items"]] == [
        "STRIPE_SECRET"]


async def test_roles(api: Api, team: Team) -> None:
    # Viewers see nothing, outsiders learn nothing.
    assert (await api.call("GET", team.path(), token=token(team.viewer))).status == 403
    assert (await api.call("GET", team.path(), token=token(team.stranger))).status == 404
    # Members: development and staging only.
    for env in ("production", "all"):
        refused = await api.call("POST", team.path(), {
            "key": "DB_URL", "value": "postgres://x", "environment": env},
            token=token(team.member))
        assert refused.status == 403, env
    prod = await api.ok("POST", team.path(), {
        "key": "DB_URL", "value": "postgres://prod", "environment": "production"},
        token=token(team.admin))
    mine = await api.ok("POST", team.path(), {"key": "X", "value": "1234"},
                        token=token(team.member))
    # A member lists production variables (masked) but cannot change them, nor move theirs.
    listed = await api.ok("GET", team.path(), token=token(team.member))
    assert {v["key"] for v in listed["items"]} == {"DB_URL", "X"}
    edit = await api.call("PATCH", team.path(f"/{prod['id']}"), {"value": "y"},
                          token=token(team.member))
    assert edit.status == 403
    move = await api.call("PATCH", team.path(f"/{mine['id']}"), {"environment": "production"},
                          token=token(team.member))
    assert move.status == 403
    assert (await api.call("DELETE", team.path(f"/{prod['id']}"),
                           token=token(team.member))).status == 403
    # An admin manages a member's variable; the owner too.
    assert (await api.call("PATCH", team.path(f"/{mine['id']}"), {"value": "5678"},
                           token=token(team.admin))).status == 200
    assert (await api.call("DELETE", team.path(f"/{prod['id']}"),
                           token=token(team.owner))).status == 204


async def test_rls_enforces_the_same_rules(team: Team, db: Database) -> None:
    insert = """
    insert into public.environment_variables (project_id, key, value_encrypted, environment,
                                              created_by)
    values ($1, $2, 'v1:k:x', $3, $4)
    """
    async with db.as_user(str(team.member)) as conn:
        await conn.execute(insert, team.project, "DEV_ONE", "development", team.member)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.as_user(str(team.member)) as conn:
            await conn.execute(insert, team.project, "PROD_ONE", "production", team.member)
    async with db.as_user(str(team.admin)) as conn:
        await conn.execute(insert, team.project, "PROD_ONE", "production", team.admin)
    async with db.as_user(str(team.viewer)) as conn:
        assert await conn.fetchval("select count(*) from public.environment_variables") == 0
    async with db.as_user(str(team.member)) as conn:
        assert await conn.fetchval("select count(*) from public.environment_variables") == 2
        changed = await conn.execute(
            "update public.environment_variables set value_encrypted = 'v1:k:y' "
            "where key = 'PROD_ONE'")
        assert changed == "UPDATE 0"
    async with db.as_user(str(team.stranger)) as conn:
        assert await conn.fetchval("select count(*) from public.environment_variables") == 0
