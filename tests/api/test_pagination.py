"""Keyset pagination: pages stay exact while rows are inserted concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from persistence.db import Database
from tests.api.client import Api, User
from tests.support import factories


@contextlib.asynccontextmanager
async def inserting(insert: Callable[[int], Awaitable[None]]) -> AsyncIterator[list[int]]:
    """Insert rows in the background for the duration of the block."""
    done = asyncio.Event()
    made: list[int] = []

    async def run() -> None:
        i = 0
        while not done.is_set():
            await insert(i)
            made.append(i)
            i += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(run())
    try:
        yield made
    finally:
        done.set()
        await task


async def _setup(api: Api, db: Database) -> tuple[User, uuid.UUID, uuid.UUID]:
    user = await api.sign_up()
    ws = await api.ok("POST", "/workspaces", {"name": "Pages"}, token=user.token)
    async with db.service() as conn:
        project_id = await factories.create_project(conn, uuid.UUID(ws["id"]))
    return user, uuid.UUID(ws["id"]), project_id


async def test_file_pages_with_concurrent_inserts(api: Api, db: Database) -> None:
    user, _, project_id = await _setup(api, db)
    async with db.service() as conn:
        for i in range(30):
            await factories.create_file(conn, project_id, f"f{i:03d}.txt", "x")
    before = {f"f{i:03d}.txt" for i in range(30)}

    async def insert(i: int) -> None:
        async with db.service() as conn:
            # Names sort before, between and after the existing ones.
            for name in (f"a{i:04d}.txt", f"f{i:03d}-{i}.txt", f"z{i:04d}.txt"):
                await factories.create_file(conn, project_id, name, "y")

    async with inserting(insert) as made:
        items = await api.all_pages(f"/projects/{project_id}/files", token=user.token, limit=4)
    assert made, "the concurrent inserter did not run"
    paths = [f["path"] for f in items]
    assert len(paths) == len(set(paths)), "duplicates across pages"
    assert before <= set(paths), "pre-existing rows were skipped"
    assert paths == sorted(paths)


async def test_message_and_workspace_pages_with_concurrent_inserts(
    api: Api, db: Database
) -> None:
    user, _, project_id = await _setup(api, db)
    async with db.service() as conn:
        conversation_id = await factories.create_conversation(
            conn, project_id, uuid.UUID(user.id)
        )
        for i in range(15):
            await conn.execute(
                "insert into public.messages (conversation_id, role, content)"
                " values ($1, 'user', $2)",
                conversation_id, f"m{i}",
            )
            await factories.create_workspace(conn, uuid.UUID(user.id), f"W{i}")

    async def insert(i: int) -> None:
        async with db.service() as conn:
            await conn.execute(
                "insert into public.messages (conversation_id, role, content)"
                " values ($1, 'assistant', $2)",
                conversation_id, f"new{i}",
            )
            await factories.create_workspace(conn, uuid.UUID(user.id), f"New{i}")

    async with inserting(insert):
        messages = await api.all_pages(
            f"/conversations/{conversation_id}/messages", token=user.token, limit=4
        )
        workspaces = await api.all_pages("/workspaces", token=user.token, limit=4)
    contents = [m["content"] for m in messages]
    # One transaction gave the first 15 the same created_at: they tie, ordered by id.
    assert set(contents[:15]) == {f"m{i}" for i in range(15)}
    assert len(set(m["id"] for m in messages)) == len(messages)
    names = [w["name"] for w in workspaces]
    assert len(set(w["id"] for w in workspaces)) == len(workspaces)
    assert {f"W{i}" for i in range(15)} | {"Pages"} <= set(names)


async def test_bad_cursors_and_limits(api: Api, db: Database) -> None:
    user, _, _ = await _setup(api, db)
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": "WzEsMl0"},  # [1,2]: wrong key type
        {"cursor": "eyJ4Ijoi"},  # truncated JSON
    ):
        reply = await api.call("GET", "/workspaces", token=user.token, params=params)
        assert reply.status == 400 and reply.error_code == "invalid_cursor", params
    for limit in ("0", "1000", "ten"):
        reply = await api.call("GET", "/workspaces", token=user.token, params={"limit": limit})
        assert reply.status == 422, limit
    page_one = await api.ok("GET", "/workspaces", token=user.token)
    assert page_one["next_cursor"] is None and len(page_one["items"]) == 1
