"""The monthly AI allowance is checked and taken atomically, across processes.

Two hubs with their own database pools stand for two server processes. Parallel requests
of one user, in conversations of their own, arrive when the allowance has room for fewer
of them than were sent: exactly that many reach the provider, the rest are refused with
``quota_exceeded`` before any provider call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ai.chat import ChatHub
from ai.chat_context import ChatError
from broker.local import LocalBroker, LocalBus
from persistence.db import Database
from tests.ai.conftest import fake_openai_config
from tests.ai.helpers import Team
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories

PARALLEL = 6
SET_USAGE = """
with cleared as (
  delete from public.usage_records where workspace_id = $2 and resource_type = 'ai_tokens'
)
insert into public.usage_records (user_id, workspace_id, resource_type, amount, unit)
values ($1, $2, 'ai_tokens', $3, 'tokens')
"""


@pytest.fixture
async def two_hubs(
    fake_openai: FakeOpenAI, db: Database, database_url: str, tmp_path: Path
) -> AsyncIterator[list[ChatHub]]:
    bus = LocalBus()
    other_db = await Database.connect(database_url, min_size=1, max_size=5)
    config = fake_openai_config(fake_openai)
    hubs = []
    for node, pool in (("node-a", db), ("node-b", other_db)):
        broker = LocalBroker(node, bus)
        await broker.start()
        hubs.append(ChatHub.from_config(pool, broker, config, tmp_path))
    yield hubs
    for hub in hubs:
        await hub.close()
        await hub.broker.close()
    await other_db.close()


async def ask_in_parallel(
    hubs: list[ChatHub], team: Team, db: Database, count: int = PARALLEL
) -> list[bool]:
    """The same question from the member in ``count`` new conversations, at once."""
    async with db.service() as conn:
        conversations = [
            await factories.create_conversation(conn, team.project, team.member, f"q{i}")
            for i in range(count)
        ]

    async def ask(index: int, conversation: uuid.UUID) -> bool:
        try:
            await hubs[index % 2].submit(conversation, team.member, "member", "same question")
        except ChatError as exc:
            assert exc.code == "quota_exceeded", exc.message
            return False
        return True

    return list(await asyncio.gather(*(ask(i, c) for i, c in enumerate(conversations))))


async def replies_finished(db: Database) -> None:
    for _ in range(1000):
        async with db.acquire() as conn:
            active = await conn.fetchval(
                "select count(*) from public.ai_jobs where status in ('pending', 'running')")
        if active == 0:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("replies still running")


async def test_parallel_requests_pass_only_while_the_allowance_lasts(
    two_hubs: list[ChatHub], fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    # Slow replies: the allowed ones are still running while the others are checked.
    fake_openai.default = Script(chunks=openai_server.stream(["ok"]), first_delay_s=0.3)
    async with db.service() as conn:
        limit = await conn.fetchval(
            "select (limits->>'ai_tokens')::bigint from public.subscription_plans "
            "where slug = 'free'")
        # One token left: a reply's reservation does not fit, nobody passes (the old check
        # let one through and overshot the plan).
        await conn.execute(SET_USAGE, team.owner, team.workspace, limit - 1)

    allowed = await ask_in_parallel(two_hubs, team, db)
    assert sum(allowed) == 0
    assert fake_openai.requests == []

    async with db.service() as conn:
        await conn.execute(SET_USAGE, team.owner, team.workspace, 0)
    allowed = await ask_in_parallel(two_hubs, team, db)
    await replies_finished(db)
    async with db.acquire() as conn:
        reserved = await conn.fetchval(
            "select max(reserved_tokens) from public.ai_jobs where status = 'completed'")
        # The reservation: the prompt's estimate plus the output cap.
        assert reserved > two_hubs[0].slot.max_output_tokens
    # As many as whole reservations fit in the empty allowance, at the same moment.
    assert sum(allowed) == min(PARALLEL, limit // reserved)
    async with db.acquire() as conn:
        await conn.execute("delete from public.ai_jobs")
        await conn.execute("delete from public.messages")
    fake_openai.requests.clear()

    # Room for two reservations (one token short of a third).
    async with db.service() as conn:
        await conn.execute(SET_USAGE, team.owner, team.workspace, limit - 3 * reserved + 1)
    allowed = await ask_in_parallel(two_hubs, team, db)
    assert sum(allowed) == 2
    await replies_finished(db)
    assert len(fake_openai.requests) == 2
    async with db.acquire() as conn:
        assert await conn.fetchval(
            "select count(*) from public.ai_jobs where status = 'completed'") == 2
        # Refused requests left nothing behind: no job, no message.
        assert await conn.fetchval("select count(*) from public.ai_jobs") == 2
        assert await conn.fetchval(
            "select count(*) from public.messages where role = 'user'") == 2


async def test_fifty_parallel_replies_at_the_edge_use_exactly_the_limit(
    two_hubs: list[ChatHub], fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    """Reserve-then-settle at the edge: room for FIT whole replies, 50 asked at once on two
    processes, exactly FIT answered, and what they really used fills the plan to the token."""
    fit = 7
    fake_openai.default = Script(chunks=openai_server.stream(["ok"]), first_delay_s=0.2)
    async with db.service() as conn:
        limit = await conn.fetchval(
            "select (limits->>'ai_tokens')::bigint from public.subscription_plans "
            "where slug = 'free'")
    assert await ask_in_parallel(two_hubs, team, db, count=1) == [True]
    await replies_finished(db)
    async with db.acquire() as conn:
        reserved = await conn.fetchval("select reserved_tokens from public.ai_jobs")
        await conn.execute("delete from public.ai_jobs")
        # A plan with room for more than FIT replies of this size.
        limit = 10 * reserved + 123
        await conn.execute(
            "update public.subscription_plans set limits = limits || jsonb_build_object("
            "'ai_tokens', $1::bigint) where slug = 'free'", limit)
    # Each reply really uses its whole reservation (the provider reports that usage).
    fake_openai.default = Script(
        chunks=openai_server.stream(["ok"], usage=(reserved - 5, 5)), first_delay_s=0.2)
    async with db.service() as conn:
        await conn.execute(SET_USAGE, team.owner, team.workspace, limit - fit * reserved)

    allowed = await ask_in_parallel(two_hubs, team, db, count=50)
    assert sum(allowed) == fit
    await replies_finished(db)
    async with db.acquire() as conn:
        used = await conn.fetchval(
            "select sum(amount)::bigint from public.usage_records "
            "where workspace_id = $1 and resource_type = 'ai_tokens'", team.workspace)
    assert used == limit
