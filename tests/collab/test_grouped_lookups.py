"""Grouped lookups (persistence/grouped.py): document sockets' access checks
(server/access_batch.py) and document loads give the same answers as a query each, with
fewer queries, and never an answer read before the lookup was asked."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from websockets.asyncio.client import connect

from collab.merge import build_from_text
from collab.store import FileGone
from persistence.db import Database
from persistence.documents import PostgresDocumentStore
from server import access_batch
from server.access import file_access
from server.access_batch import FileAccessBatch
from server.auth.tokens import issue_access_token
from tests.collab.conftest import DocWorld
from tests.collab.test_ws_bad_input import close_code_after, doc_url
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]

DELETE_MEMBER = "delete from public.workspace_members where workspace_id = $1 and user_id = $2"
DELETE_FILE = "update public.files set is_deleted = true where id = $1"


class GatedDatabase(Database):
    """The test's database whose connections are handed out only once ``gate`` is set."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.pool)
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    @asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        self.asked.set()
        await self.gate.wait()
        async with super().acquire(timeout) as conn:
            yield conn


async def test_checks_asked_together_share_one_query(world: DocWorld) -> None:
    files = [await world.new_file() for _ in range(5)]
    viewer = await world.new_user("viewer")
    stranger = await world.new_user(None)
    batch = FileAccessBatch(world.db)
    asks = [(user, f) for f in files for user in (world.owner, viewer, stranger)]
    asks += asks  # the same (user, file) twice in one group
    asks.append((world.owner, uuid.uuid4()))  # no such file
    got = await asyncio.gather(*(batch.check(str(user), f) for user, f in asks))
    assert batch.queries == 1
    # Each verdict is the one a query of its own gives.
    for (user, f), access in zip(asks, got, strict=True):
        assert access == await file_access(world.db, str(user), f)
    roles = {(user, a.file_id): a.role for (user, _), a in zip(asks, got, strict=True) if a}
    assert roles[(world.owner, files[0])] == "owner"
    assert roles[(viewer, files[0])] == "viewer"
    assert roles[(stranger, files[0])] is None
    assert got[-1] is None


async def test_a_check_asked_during_a_query_waits_for_the_next(world: DocWorld) -> None:
    file_id = await world.new_file()
    member = await world.new_user("member")
    gated = GatedDatabase(world.db)
    batch = FileAccessBatch(gated)
    first = asyncio.create_task(batch.check(str(member), file_id))
    await gated.asked.wait()  # the first group's query is under way
    async with world.db.service() as conn:
        await conn.execute(DELETE_MEMBER, world.workspace_id, member)
    second = asyncio.create_task(batch.check(str(member), file_id))
    await asyncio.sleep(0.05)
    assert not second.done()
    gated.gate.set()
    await first
    later = await second
    # Asked after the removal committed: answered by a query of its own, not the first one.
    assert batch.queries == 2
    assert later is not None and later.role is None


async def test_a_failed_query_fails_its_group_and_the_next_one_runs(
    world: DocWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = await world.new_file()
    batch = FileAccessBatch(world.db)
    monkeypatch.setattr(
        access_batch, "SELECT_FILE_ACCESS_MANY", "select $1::uuid[], $2::uuid[], 1 / 0"
    )
    asks = [batch.check(str(world.owner), file_id) for _ in range(3)]
    for failed in await asyncio.gather(*asks, return_exceptions=True):
        assert isinstance(failed, asyncpg.DivisionByZeroError)
    monkeypatch.undo()
    access = await batch.check(str(world.owner), file_id)
    assert access is not None and access.role == "owner"


async def test_a_stopped_batch_refuses_checks(world: DocWorld) -> None:
    batch = FileAccessBatch(world.db)
    await batch.stop()
    with pytest.raises(RuntimeError):
        await batch.check(str(world.owner), await world.new_file())


async def test_a_burst_of_sockets_gets_each_its_own_verdict(
    live_server: StartServer, world: DocWorld
) -> None:
    """Members, a stranger, a removed member and expired or forged tokens connect in one
    burst: only the members are served; the rest are refused as with a query each."""
    server = await live_server(world.settings)
    file_id = await world.new_file("shared\n")
    members = [await world.new_user("member") for _ in range(4)]
    viewer = await world.new_user("viewer")
    stranger = await world.new_user(None)
    removed = await world.new_user("member")
    async with world.db.service() as conn:
        await conn.execute(DELETE_MEMBER, world.workspace_id, removed)
    secret = world.settings.jwt_secret
    expired = issue_access_token(secret, str(world.owner), None, now=time.time() - 7200)
    cases: list[tuple[str, int | None]] = []
    for user in [world.owner, *members, viewer] * 5:
        cases.append((world.token(user), None))  # served: still open after the sync
    cases += [(world.token(stranger), 4403)] * 5
    cases += [(world.token(removed), 4403)] * 5
    cases += [(expired, 4401)] * 5
    cases += [(world.token(world.owner) + "x", 4401)] * 5

    async def outcome(token: str) -> int | None:
        async with connect(doc_url(server, file_id, token)) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except Exception:
                return ws.close_code
            return None

    got = await asyncio.gather(*(outcome(token) for token, _ in cases))
    assert got == [code for _, code in cases]
    # A refused socket's close code is final; a served one stays served.
    async with connect(doc_url(server, file_id, world.token(stranger))) as ws:
        assert await close_code_after(ws, None) == 4403


async def test_documents_loaded_together_share_one_query(world: DocWorld) -> None:
    files = [await world.new_file(f"text {i}\n") for i in range(6)]
    gone = await world.new_file("deleted\n")
    async with world.db.service() as conn:
        await conn.execute(DELETE_FILE, gone)
    store = PostgresDocumentStore(world.db)
    for file_id in files[:3]:  # some documents with a state and log rows
        await store.initialize(file_id, build_from_text)
        await store.append_updates([(file_id, b"\x00\x00")])
    asked = [*files, files[0], gone, uuid.uuid4()]
    got = await asyncio.gather(*(store.load(f) for f in asked), return_exceptions=True)
    assert store.load_queries == 1
    assert isinstance(got[-1], FileGone) and isinstance(got[-2], FileGone)
    for file_id, stored in zip(asked[:-2], got[:-2], strict=True):
        assert not isinstance(stored, BaseException)
        assert stored.content == f"text {files.index(file_id)}\n"
        alone = PostgresDocumentStore(world.db)
        assert stored == await alone.load(file_id)  # what a load of its own reads
    assert got[0].updates == [b"\x00\x00"] and got[0].state is not None  # type: ignore[union-attr]
    assert got[5].updates == [] and got[5].state is None  # type: ignore[union-attr]
