"""Nothing typed is lost: server stopped or killed mid-editing, compaction under load, saves."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from collab.merge import merge_document
from collab.store import Merged
from persistence.documents import PostgresDocumentStore
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_until
from tests.collab.test_ws_bad_input import served_text
from tests.support.net import free_port
from tests.support.servers import LiveServer, ProcessServer, server_env

StartServer = Callable[..., Awaitable[LiveServer]]


async def _content_is(world: DocWorld, file_id: uuid.UUID, expected: str) -> bool:
    return await world.content(file_id) == expected


async def test_stopped_server_loses_nothing(live_server: StartServer, world: DocWorld) -> None:
    settings = world.settings
    server = await live_server(settings)
    file_id = await world.new_file("")
    token = world.token(world.owner)
    agents = [await NodeAgent.start(server.ws_url, file_id, token) for _ in range(2)]
    try:
        for agent in agents:
            await agent.wait_synced()
        expected = ""
        for i in range(40):
            await agents[i % 2].call("append", value=f"{i};")
            expected += f"{i};"
            # Each append is seen by both before the next: two appends at the same end
            # before either saw the other are concurrent and may land in either order.
            await wait_until(lambda text=expected: _same(agents, text))
        await server.stop()  # mid-session: the hub flushes and compacts on the way down
        assert await world.content(file_id) == expected
        codes = {c for a in agents for c in a.close_codes()}
        assert codes & {1012, 1001}, codes
    finally:
        for agent in agents:
            await agent.stop()
    again = await live_server(settings)
    assert await served_text(again, file_id, token) == expected


async def _same(agents: list[NodeAgent], expected: str) -> bool:
    return all([await a.text() == expected for a in agents])


async def test_killed_process_loses_nothing(world: DocWorld, tmp_path: Path) -> None:
    env = server_env(world.settings, {
        "DOC_LOG_FLUSH_MS": "10", "DOC_COMPACT_AFTER_S": "60", "DOC_IDLE_UNLOAD_S": "1",
    })
    port = free_port()
    first = ProcessServer(port, env, tmp_path / "first.log")
    await first.start()
    file_id = await world.new_file("head\n")
    token = world.token(world.owner)
    writer = await NodeAgent.start(first.ws_url, file_id, token)
    second: ProcessServer | None = None
    try:
        await writer.wait_synced()
        for i in range(30):
            await writer.call("append", value=f"line {i}\n")
        expected = await writer.text()
        await asyncio.sleep(0.3)  # well past the 10 ms group-commit window
        first.signal(signal.SIGKILL)
        first.kill()
        second = ProcessServer(port, env, tmp_path / "second.log")
        await second.start()
        # A fresh client sees everything from the update log alone.
        fresh = await NodeAgent.start(second.ws_url, file_id, token)
        try:
            await fresh.wait_synced()
            assert await fresh.text() == expected
            # The surviving client reconnects by itself and keeps editing.
            await wait_until(lambda: _synced_again(writer), timeout=15)
            await writer.call("append", value="after\n")
            await wait_until(lambda: _text_is(fresh, expected + "after\n"))
        finally:
            await fresh.stop()
        await writer.stop()
        await wait_until(lambda: _content_is(world, file_id, expected + "after\n"), timeout=15)
    finally:
        await writer.stop()
        first.kill()
        if second is not None:
            await second.terminate()


async def _synced_again(agent: NodeAgent) -> bool:
    return bool(await agent.call("synced")) and len(agent.close_codes()) >= 1


async def _text_is(agent: NodeAgent, expected: str) -> bool:
    return await agent.text() == expected


async def test_compaction_under_concurrent_writes_loses_nothing(world: DocWorld) -> None:
    """Writers append log rows while compactions (as from several processes) run."""
    from collab.merge import build_from_text, new_doc

    store = PostgresDocumentStore(world.db)
    file_id = await world.new_file("")
    first = await store.initialize(file_id, build_from_text)
    writers = 4
    per_writer = 25
    docs = []
    for n in range(writers):
        doc, _ = new_doc()
        assert first.state is not None
        doc.apply_update(first.state)
        docs.append((n, doc))

    async def write(n: int, doc: object) -> None:
        from pycrdt import Doc, Text

        assert isinstance(doc, Doc)
        text = doc.get("content", type=Text)
        for i in range(per_writer):
            before = doc.get_state()
            text.insert(0, f"<{n}.{i}>")
            await store.append_updates([(file_id, doc.get_update(before))])
            await asyncio.sleep(0)

    async def compact_repeatedly() -> int:
        runs = 0
        for _ in range(15):
            await store.compact(file_id, lambda s, us: merge_document(s, us, None))
            runs += 1
            await asyncio.sleep(0.005)
        return runs

    results = await asyncio.gather(
        *(write(n, d) for n, d in docs), compact_repeatedly(), compact_repeatedly()
    )
    assert results[-1] == 15
    await store.compact(file_id, lambda s, us: merge_document(s, us, None))
    stored = await store.load(file_id)
    assert stored.updates == []
    doc, text = new_doc()
    assert stored.state is not None
    doc.apply_update(stored.state)
    final = str(text)
    for n in range(writers):
        for i in range(per_writer):
            assert f"<{n}.{i}>" in final
    assert len(final) == sum(len(f"<{n}.{i}>") for n in range(writers) for i in range(per_writer))
    assert await world.content(file_id) == final


async def test_compaction_keeps_an_append_that_commits_while_it_merges(
    world: DocWorld,
) -> None:
    """A log row whose id was drawn before compaction read the log, but which committed
    during the merge, is not deleted unmerged (ids are not commit-ordered)."""
    from pycrdt import Text

    from collab.merge import apply_all, build_from_text, new_doc
    from persistence.documents import INSERT_LOG

    store = PostgresDocumentStore(world.db)
    file_id = await world.new_file("")
    first = await store.initialize(file_id, build_from_text)
    assert first.state is not None
    doc, _ = new_doc()
    doc.apply_update(first.state)
    text = doc.get("content", type=Text)

    def edit(value: str) -> bytes:
        before = doc.get_state()
        text.insert(len(text), value)
        return doc.get_update(before)

    early, late = edit("a"), edit("b")
    entered, release = threading.Event(), threading.Event()

    def slow_merge(state: bytes | None, updates: list[bytes]) -> Merged:
        entered.set()
        release.wait(10)
        return merge_document(state, updates, None)

    async with world.db.acquire() as slow_writer:
        transaction = slow_writer.transaction()
        await transaction.start()
        await slow_writer.execute(INSERT_LOG, [file_id], [early])  # lower id, uncommitted
        await store.append_updates([(file_id, late)])  # higher id, committed
        compaction = asyncio.create_task(store.compact(file_id, slow_merge))
        assert await asyncio.to_thread(entered.wait, 10)
        await transaction.commit()  # commits while the merge runs
    release.set()
    await compaction
    stored = await store.load(file_id)
    check, check_text = new_doc()
    apply_all(check, [stored.state or b"", *stored.updates])
    assert str(check_text) == "ab"


async def test_save_endpoint_and_metrics(live_server: StartServer, world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("v0")
    token = world.token(world.owner)
    viewer = await world.new_user("viewer")
    agent = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        await agent.wait_synced()
        await agent.call("append", value=" edited")
        await wait_until(lambda: _hub_text_is(server, file_id, "v0 edited"))
        async with aiohttp.ClientSession() as http:
            url = f"{server.url}/api/v1/files/{file_id}/save"
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(url, json={"change_message": "checkpoint"},
                                 headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                body = await resp.json()
            assert body["version_number"] == 1
            assert body["change_message"] == "checkpoint"
            assert body["changed_by"] == str(world.owner)
            assert await world.content(file_id) == "v0 edited"
            async with http.post(url, json={}, headers={
                "Authorization": f"Bearer {world.token(viewer)}"}) as resp:
                assert resp.status == 403
            async with http.get(f"{server.url}/metrics") as resp:
                assert resp.status == 200
                metrics = await resp.text()
        for name in ("icreate_doc_rooms_loaded", "icreate_doc_connections_open",
                     "icreate_doc_updates_in_total", "icreate_doc_broadcast_seconds_bucket",
                     "icreate_doc_log_lag_seconds", "icreate_doc_compaction_seconds_bucket",
                     "icreate_doc_closes_total", "icreate_doc_awareness_in_total"):
            assert name in metrics, name
    finally:
        await agent.stop()


async def _hub_text_is(server: LiveServer, file_id: uuid.UUID, expected: str) -> bool:
    hub = server.app.state.services.documents
    return bool(await hub.read_text(file_id) == expected)


async def test_rest_upload_reaches_open_editors_as_a_diff(live_server: StartServer,
                                                          world: DocWorld) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("line 1\nline 2\n")
    token = world.token(world.owner)
    online = await NodeAgent.start(server.ws_url, file_id, token)
    offline = await NodeAgent.start(server.ws_url, file_id, token)
    try:
        await online.wait_synced()
        await offline.wait_synced()
        await offline.call("disconnect")
        await offline.call("append", value="offline\n")
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{server.url}/api/v1/files/{file_id}/content",
                                json={"content": "line 1\nLINE 2\nline 3\n"},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200, await resp.text()
        await wait_until(lambda: _text_is(online, "line 1\nLINE 2\nline 3\n"))
        assert await world.content(file_id) == "line 1\nLINE 2\nline 3\n"
        # The offline client merges its old-history edit without duplicating any text.
        await offline.call("connect")
        merged = "line 1\nLINE 2\nline 3\noffline\n"
        await wait_until(lambda: _text_is(offline, merged))
        await wait_until(lambda: _text_is(online, merged))
    finally:
        await online.stop()
        await offline.stop()
