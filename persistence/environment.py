"""Project environment variables: stored encrypted, listed masked, loaded for runs and builds.

A variable belongs to one environment (``development``, ``staging``, ``production``) or to
``all``; for a given environment, its own variable overrides an ``all`` one of the same key.
Values are encrypted with the keyring (``persistence.crypto``), bound to their row id.

For builds and deployments (and anything else that runs a project's code)::

    async with db.acquire() as conn:
        env = await load_environment(conn, keyring, project_id, "production")
    run(..., env=env.variables)
    masker = execution.masking.SecretMasker(env.secret_values)   # mask logs with it

Runs and terminals in the IDE get ``development`` (see ``EnvironmentVariables``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from persistence.crypto import DecryptionError, Keyring
from persistence.db import Database

ENVIRONMENTS = ("development", "staging", "production")
SCOPES = (*ENVIRONMENTS, "all")
# What runs and terminals in the IDE get.
IDE_ENVIRONMENT = "development"

COLUMNS = "id, project_id, key, environment, is_secret, created_by, created_at, updated_at"
LIST_VARIABLES = f"""
select {COLUMNS}, value_encrypted
from public.environment_variables
where project_id = $1 and ($2::text is null or environment = $2)
order by key, environment
"""
SELECT_VARIABLE = f"""
select {COLUMNS}, value_encrypted
from public.environment_variables
where id = $1 and project_id = $2
"""
INSERT_VARIABLE = f"""
insert into public.environment_variables
  (id, project_id, key, value_encrypted, environment, is_secret, created_by)
values ($1, $2, $3, $4, $5, $6, $7)
returning {COLUMNS}, value_encrypted
"""
UPDATE_VARIABLE = f"""
update public.environment_variables
set key = $3, value_encrypted = $4, environment = $5, is_secret = $6
where id = $1 and project_id = $2
returning {COLUMNS}, value_encrypted
"""
DELETE_VARIABLE = """
delete from public.environment_variables where id = $1 and project_id = $2 returning id
"""
COUNT_VARIABLES = "select count(*) from public.environment_variables where project_id = $1"
SELECT_FOR_ENVIRONMENT = """
select id, key, value_encrypted, environment, is_secret
from public.environment_variables
where project_id = $1 and environment in ($2, 'all')
"""


class EnvironmentUnavailable(Exception):
    """A variable cannot be decrypted (its key was removed from ``ENCRYPTION_KEYS``)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"environment variable {key} cannot be decrypted")
        self.key = key


@dataclass(frozen=True)
class ProjectEnvironment:
    """The variables of one project in one environment, and which values are secret."""

    variables: dict[str, str] = field(default_factory=dict)
    secret_values: tuple[str, ...] = ()


EMPTY = ProjectEnvironment()


def context(variable_id: uuid.UUID) -> str:
    return f"environment_variables.value_encrypted:{variable_id}"


async def list_variables(
    conn: asyncpg.Connection, project_id: uuid.UUID, environment: str | None
) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(LIST_VARIABLES, project_id, environment)]


async def get_variable(
    conn: asyncpg.Connection, project_id: uuid.UUID, variable_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_VARIABLE, variable_id, project_id)
    return dict(row) if row else None


async def count_variables(conn: asyncpg.Connection, project_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(COUNT_VARIABLES, project_id)
    return count


async def insert_variable(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    project_id: uuid.UUID,
    key: str,
    value: str,
    environment: str,
    is_secret: bool,
    created_by: uuid.UUID,
) -> dict[str, Any]:
    variable_id = uuid.uuid4()
    row = await conn.fetchrow(
        INSERT_VARIABLE, variable_id, project_id, key,
        keyring.encrypt(value, context(variable_id)), environment, is_secret, created_by,
    )
    assert row is not None
    return dict(row)


async def update_variable(
    conn: asyncpg.Connection,
    *,
    project_id: uuid.UUID,
    variable_id: uuid.UUID,
    key: str,
    value_encrypted: str,
    environment: str,
    is_secret: bool,
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        UPDATE_VARIABLE, variable_id, project_id, key, value_encrypted, environment, is_secret
    )
    return dict(row) if row else None


async def delete_variable(
    conn: asyncpg.Connection, project_id: uuid.UUID, variable_id: uuid.UUID
) -> bool:
    return await conn.fetchval(DELETE_VARIABLE, variable_id, project_id) is not None


async def load_environment(
    conn: asyncpg.Connection, keyring: Keyring, project_id: uuid.UUID, environment: str
) -> ProjectEnvironment:
    """Decrypted variables of ``environment`` (its own over ``all``) and the secret values.

    Raises ``EnvironmentUnavailable`` when a value does not decrypt (rather than running
    the program without it).
    """
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}")
    rows = sorted(
        await conn.fetch(SELECT_FOR_ENVIRONMENT, project_id, environment),
        key=lambda r: r["environment"] != "all",  # `all` first, the environment's own last
    )
    variables: dict[str, str] = {}
    secret: dict[str, bool] = {}
    for row in rows:
        try:
            value = keyring.decrypt(row["value_encrypted"], context(row["id"]))
        except DecryptionError as exc:
            raise EnvironmentUnavailable(row["key"]) from exc
        variables[row["key"]] = value
        secret[row["key"]] = bool(row["is_secret"])
    return ProjectEnvironment(
        variables, tuple(value for key, value in variables.items() if secret[key])
    )


class EnvironmentVariables:
    """What the execution and terminal hubs are given: a project's IDE environment."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    async def load(
        self, project_id: uuid.UUID, environment: str = IDE_ENVIRONMENT
    ) -> ProjectEnvironment:
        async with self.db.acquire() as conn:
            return await load_environment(conn, self.keyring, project_id, environment)
