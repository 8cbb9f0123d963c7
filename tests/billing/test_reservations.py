"""The AI allowance of analyses and edits (``ai.metering``): reserve whole or refuse, settle to
the real count, on the payer's (workspace owner's) plan."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ai import metering
from ai.providers.base import Usage
from persistence.db import Database
from tests.support import factories

LIMIT = 1000
SET_LIMIT = """
update public.subscription_plans set limits = limits || jsonb_build_object('ai_tokens', $1::int)
where slug = 'free'
"""


async def test_parallel_reservations_fit_whole_and_settle_to_the_real_count(db: Database) -> None:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        member = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, workspace, member, "member")
        project = await factories.create_project(conn, workspace)
        await conn.execute(SET_LIMIT, LIMIT)

    async def reserve() -> metering.Reserved | metering.QuotaExceeded:
        async with db.acquire() as conn:
            try:
                return await metering.reserve(
                    conn, user_id=member, project_id=project, job_type="analyze",
                    job_input={}, model="m", tokens=300, stale_after_s=600)
            except metering.QuotaExceeded as exc:
                return exc

    results = await asyncio.gather(*(reserve() for _ in range(20)))
    taken = [r for r in results if isinstance(r, metering.Reserved)]
    refused = [r for r in results if isinstance(r, metering.QuotaExceeded)]
    assert (len(taken), len(refused)) == (3, 17)  # 3 x 300 fit in 1,000, a 4th would not
    assert {(r.limit, r.plan) for r in refused} == {(LIMIT, "free")}
    assert all(r.used == 900 for r in refused)

    # Settled to what the provider really used: the unused part of a reservation is free again.
    async with db.acquire() as conn:
        for reserved in taken:
            await metering.settle(
                conn, reserved.job_id, user_id=member, workspace_id=workspace,
                status="completed", output={}, error=None,
                usage=Usage(150, 50, False, "stop", "m"), model="m", duration_ms=1,
                metadata={})
        again = await metering.reserve(
            conn, user_id=owner, project_id=project, job_type="analyze", job_input={},
            model="m", tokens=400, stale_after_s=600)
        assert again.tokens == 400
        with pytest.raises(metering.QuotaExceeded) as refused_exc:
            await metering.reserve(
                conn, user_id=owner, project_id=project, job_type="analyze", job_input={},
                model="m", tokens=1, stale_after_s=600)
    # 3 x 200 recorded + 400 reserved = 1,000: full, for the owner too (one payer).
    assert refused_exc.value.used == LIMIT


async def test_a_user_cannot_take_or_probe_another_workspaces_allowance(db: Database) -> None:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        stranger = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
    async with db.as_user(str(stranger)) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("select public.billing_take($1, 'projects', 1)", workspace)
    async with db.as_user(str(owner)) as conn:
        assert await conn.fetchval(
            "select public.billing_take($1, 'projects', 1)", workspace) == owner
