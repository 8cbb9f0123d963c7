"""A project's environment variables: create, list (secrets masked), change, delete.

Who may do what (the same rules in the API and in RLS, 0121): members and above list every
variable of the project; members write ``development`` and ``staging`` variables, admins and
owners also ``production`` and ``all``; viewers see none. A secret's value is never returned
once written (``value`` is null, ``masked`` shows that one is set); a non-secret value is.
Values are encrypted with the keyring before they reach the database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from persistence import environment as store
from persistence.crypto import DecryptionError
from server.api.guards import require_project
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError, forbidden, not_found

Scope = Literal["development", "staging", "production", "all"]
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# What the sandbox sets itself, or what would break it.
RESERVED = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "SHELL", "USER", "PWD", "OLDPWD", "SHLVL", "HOSTNAME"}
)
RESERVED_PREFIXES = ("LD_", "BASH_FUNC_", "ICREATE_")
MAX_VALUE_CHARS = 65_536
MAX_PER_PROJECT = 500
MASK = "••••••••"
ADMIN_SCOPES = frozenset({"production", "all"})


class Variable(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    key: str
    environment: str
    is_secret: bool
    value: str | None
    masked: str | None
    created_by: uuid.UUID | None
    created_at: datetime | None
    updated_at: datetime | None


class VariableList(BaseModel):
    items: list[Variable]


class VariableCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256, pattern=KEY_PATTERN)
    value: str = Field(max_length=MAX_VALUE_CHARS)
    environment: Scope = "development"
    is_secret: bool = True


class VariableUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str | None = Field(None, min_length=1, max_length=256, pattern=KEY_PATTERN)
    value: str | None = Field(None, max_length=MAX_VALUE_CHARS)
    environment: Scope | None = None
    is_secret: bool | None = None


class ListQuery(BaseModel):
    environment: Scope | None = None


def _check_key(key: str) -> None:
    if key.upper() in RESERVED or key.upper().startswith(RESERVED_PREFIXES):
        raise ApiError(422, "reserved_key", f"{key} is set by the sandbox and cannot be changed")
    if "\x00" in key:
        raise ApiError(422, "validation_error", "a key cannot contain NUL")


def _check_value(value: str) -> None:
    if "\x00" in value:
        raise ApiError(422, "validation_error", "a value cannot contain NUL characters")


def _check_scope(role_is_admin: bool, environment: str) -> None:
    if environment in ADMIN_SCOPES and not role_is_admin:
        raise forbidden(f"{environment} variables are managed by admins and owners")


def _public(ctx: Ctx, row: dict[str, Any]) -> dict[str, Any]:
    value: str | None = None
    if not row["is_secret"]:
        try:
            value = ctx.services.keyring.decrypt(row["value_encrypted"], store.context(row["id"]))
        except DecryptionError:
            value = None
    return {
        **{k: v for k, v in row.items() if k != "value_encrypted"},
        "value": value,
        "masked": MASK if row["is_secret"] else None,
    }


async def list_variables(ctx: Ctx) -> dict[str, Any]:
    query: ListQuery = ctx.query
    project_id = ctx.uuid("project_id")
    await require_project(ctx, project_id, "member")
    async with ctx.db.as_user(ctx.user_id) as conn:
        rows = await store.list_variables(conn, project_id, query.environment)
    return {"items": [_public(ctx, row) for row in rows]}


async def create_variable(ctx: Ctx) -> dict[str, Any]:
    body: VariableCreate = ctx.body
    project_id = ctx.uuid("project_id")
    access = await require_project(ctx, project_id, "member")
    _check_key(body.key)
    _check_value(body.value)
    _check_scope(access.at_least("admin"), body.environment)
    async with ctx.db.as_user(ctx.user_id) as conn:
        if await store.count_variables(conn, project_id) >= MAX_PER_PROJECT:
            raise ApiError(422, "too_many_variables",
                           f"a project has at most {MAX_PER_PROJECT} variables")
        try:
            async with conn.transaction():
                row = await store.insert_variable(
                    conn, ctx.services.keyring, project_id=project_id, key=body.key,
                    value=body.value, environment=body.environment, is_secret=body.is_secret,
                    created_by=ctx.user_uuid,
                )
        except asyncpg.UniqueViolationError:
            raise ApiError(409, "variable_exists",
                           f"{body.key} already exists in {body.environment}") from None
    return _public(ctx, row)


async def update_variable(ctx: Ctx) -> dict[str, Any]:
    body: VariableUpdate = ctx.body
    project_id, variable_id = ctx.uuid("project_id"), ctx.uuid("variable_id")
    access = await require_project(ctx, project_id, "member")
    admin = access.at_least("admin")
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_variable(conn, project_id, variable_id)
        if row is None:
            raise not_found("no such variable")
        _check_scope(admin, row["environment"])
        key = body.key if body.key is not None else row["key"]
        environment = body.environment or row["environment"]
        is_secret = row["is_secret"] if body.is_secret is None else body.is_secret
        _check_key(key)
        _check_scope(admin, environment)
        if row["is_secret"] and not is_secret and body.value is None:
            # Turning a secret into a plain variable would show its value: give it again.
            raise ApiError(422, "value_required",
                           "give the value again to make a secret variable visible")
        encrypted = row["value_encrypted"]
        if body.value is not None:
            _check_value(body.value)
            encrypted = ctx.services.keyring.encrypt(body.value, store.context(variable_id))
        try:
            async with conn.transaction():
                updated = await store.update_variable(
                    conn, project_id=project_id, variable_id=variable_id, key=key,
                    value_encrypted=encrypted, environment=environment, is_secret=is_secret,
                )
        except asyncpg.UniqueViolationError:
            raise ApiError(409, "variable_exists",
                           f"{key} already exists in {environment}") from None
    if updated is None:
        raise not_found("no such variable")
    return _public(ctx, updated)


async def delete_variable(ctx: Ctx) -> None:
    project_id, variable_id = ctx.uuid("project_id"), ctx.uuid("variable_id")
    access = await require_project(ctx, project_id, "member")
    async with ctx.db.as_user(ctx.user_id) as conn:
        row = await store.get_variable(conn, project_id, variable_id)
        if row is None:
            raise not_found("no such variable")
        _check_scope(access.at_least("admin"), row["environment"])
        if not await store.delete_variable(conn, project_id, variable_id):
            raise not_found("no such variable")


PATH = "/projects/{project_id}/environment-variables"
ENDPOINTS = [
    Endpoint("GET", PATH, list_variables,
             "A project's environment variables, secret values masked (member or higher)",
             "variables", query=ListQuery, response=VariableList, errors=(403,)),
    Endpoint("POST", PATH, create_variable,
             "Add an environment variable (production and all: admin or owner)", "variables",
             body=VariableCreate, response=Variable, status=201, errors=(403, 409, 422)),
    Endpoint("PATCH", PATH + "/{variable_id}", update_variable,
             "Change a variable's key, value, environment or secrecy", "variables",
             body=VariableUpdate, response=Variable, errors=(403, 404, 409, 422)),
    Endpoint("DELETE", PATH + "/{variable_id}", delete_variable,
             "Delete an environment variable", "variables", status=204, errors=(403, 404)),
]
