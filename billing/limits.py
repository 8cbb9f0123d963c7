"""Plan limits taken atomically where a resource is created.

``take`` runs ``public.billing_take`` in the caller's transaction: the payer's advisory lock is
held until that transaction ends, so the insert that follows is counted by the next request.
The database raises SQLSTATE ``BL402`` with a JSON detail when the plan does not allow it;
``from_database`` turns it into ``PlanLimitReached`` (402 ``plan_limit_reached`` on the API).
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

import asyncpg

Resource = Literal["projects", "members", "executions", "storage_bytes", "ai_tokens"]
SQLSTATE = "BL402"
TAKE = "select public.billing_take($1, $2, $3, $4)"
TAKE_FOR_PROJECT = """
select public.billing_take((select workspace_id from public.projects where id = $1), $2, $3, $4)
"""
PROJECT_WRITABLE = "select public.billing_project_writable($1)"


class PlanLimitReached(Exception):
    """The payer's plan does not allow this much of ``resource`` (402 on the API)."""

    def __init__(self, resource: str, limit: int, used: int, plan: str) -> None:
        super().__init__(resource)
        self.resource = resource
        self.limit = limit
        self.used = used
        self.plan = plan

    @property
    def message(self) -> str:
        return (f"the {self.plan} plan allows {self.limit} {self.resource.replace('_', ' ')}"
                f" and {self.used} are used: upgrade the plan of the workspace's owner")

    def __str__(self) -> str:
        return self.message


def from_database(exc: asyncpg.PostgresError) -> PlanLimitReached | None:
    """The limit a database refusal reports, or None for any other error."""
    if getattr(exc, "sqlstate", None) != SQLSTATE:
        return None
    detail = json.loads(getattr(exc, "detail", None) or "{}")
    return PlanLimitReached(str(detail.get("resource")), int(detail.get("limit", 0)),
                            int(detail.get("used", 0)), str(detail.get("plan")))


async def take(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, resource: Resource, amount: int = 1,
    *, stale_after_s: float = 900.0,
) -> uuid.UUID:
    """Take ``amount`` of ``resource`` for the workspace's payer (the caller's transaction
    must then create it); returns the payer's id. ``PlanLimitReached`` when over."""
    try:
        payer: uuid.UUID = await conn.fetchval(TAKE, workspace_id, resource, amount,
                                               stale_after_s)
    except asyncpg.PostgresError as exc:
        reached = from_database(exc)
        if reached is None:
            raise
        raise reached from None
    return payer


async def take_for_project(
    conn: asyncpg.Connection, project_id: uuid.UUID, resource: Resource, amount: int = 1,
    *, stale_after_s: float = 900.0,
) -> uuid.UUID:
    """``take`` for the workspace of a project."""
    try:
        payer: uuid.UUID = await conn.fetchval(TAKE_FOR_PROJECT, project_id, resource, amount,
                                               stale_after_s)
    except asyncpg.PostgresError as exc:
        reached = from_database(exc)
        if reached is None:
            raise
        raise reached from None
    return payer


async def project_writable(conn: asyncpg.Connection, project_id: uuid.UUID) -> bool:
    """False for a project beyond its payer's plan (after a downgrade): read-only."""
    return bool(await conn.fetchval(PROJECT_WRITABLE, project_id))
