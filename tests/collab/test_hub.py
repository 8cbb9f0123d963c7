"""The document hub in-process: rooms, protocol handling, persistence, roles, gap repair."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from broker.local import LocalBroker, LocalBus
from collab import protocol
from collab.config import CollabConfig
from collab.hub import DocumentHub
from collab.store import FileGone, MemoryStore, StoredDocument
from tests.collab.peers import ClientPeer

FAST = CollabConfig(
    log_flush_ms=5, compact_after_s=0.2, idle_unload_s=0.2, gap_repair_s=0.2,
    role_check_s=0.05, version_bucket_s=0.3, max_message_bytes=4096, max_document_bytes=16384,
)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.builds = 0
        self.load_delay = 0.0

    async def load(self, file_id: uuid.UUID) -> StoredDocument:
        self.loads += 1
        if self.load_delay:
            await asyncio.sleep(self.load_delay)
        return await super().load(file_id)

    async def initialize(self, file_id: uuid.UUID, build: Any) -> StoredDocument:
        def counted(content: str) -> tuple[bytes, bytes]:
            self.builds += 1
            result: tuple[bytes, bytes] = build(content)
            return result

        return await super().initialize(file_id, counted)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
async def hub(store: CountingStore) -> AsyncIterator[DocumentHub]:
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(store, broker, FAST)
    await h.start()
    yield h
    await h.stop()
    await broker.close()


def new_file(store: MemoryStore, content: str = "") -> uuid.UUID:
    file_id = uuid.uuid4()
    store.add_file(file_id, content)
    return file_id


async def connect(hub: DocumentHub, file_id: uuid.UUID, peer: ClientPeer) -> Any:
    assert isinstance(hub.store, MemoryStore)
    hub.store.roles[(peer.user_id, peer.workspace_id)] = "viewer" if peer.read_only else "member"
    room = await hub.join(file_id, peer)
    hub.receive(room, peer, peer.step1())
    return room


async def test_join_sends_step1_then_serves_stored_text(hub: DocumentHub,
                                                        store: CountingStore) -> None:
    file_id = new_file(store, "hello world")
    peer = ClientPeer()
    await connect(hub, file_id, peer)
    assert protocol.parse_frame(peer.frames[0]).sub == protocol.SYNC_STEP1
    assert peer.value() == "hello world"
    assert store.builds == 1


async def test_five_simultaneous_joins_share_one_load(hub: DocumentHub,
                                                      store: CountingStore) -> None:
    file_id = new_file(store, "shared")
    store.load_delay = 0.05
    peers = [ClientPeer() for _ in range(5)]
    await asyncio.gather(*(connect(hub, file_id, p) for p in peers))
    assert store.loads == 1
    assert store.builds == 1
    assert [p.value() for p in peers] == ["shared"] * 5


async def test_failed_load_raises_and_stores_nothing(hub: DocumentHub,
                                                     store: CountingStore) -> None:
    file_id = new_file(store, "keep me")
    store.fail_next = 1
    with pytest.raises(OSError):
        await hub.join(file_id, ClientPeer())
    assert store.files[file_id].state is None
    assert file_id not in hub.rooms
    peer = ClientPeer()
    await connect(hub, file_id, peer)
    assert peer.value() == "keep me"


async def test_missing_file(hub: DocumentHub) -> None:
    with pytest.raises(FileGone):
        await hub.join(uuid.uuid4(), ClientPeer())


async def test_updates_reach_peers_and_the_log(hub: DocumentHub, store: CountingStore) -> None:
    file_id = new_file(store)
    a, b = ClientPeer(), ClientPeer()
    room = await connect(hub, file_id, a)
    await connect(hub, file_id, b)
    frame = a.edit(0, "abc")
    hub.receive(room, a, frame)
    assert b.value() == "abc"
    assert b.frames[-1] == frame  # relayed as the same bytes
    await eventually(lambda: store.files[file_id].content == "abc")  # compacted
    assert store.files[file_id].log == []


async def test_viewer_edits_are_dropped_once_denied(hub: DocumentHub,
                                                    store: CountingStore) -> None:
    file_id = new_file(store, "x")
    viewer, member = ClientPeer(read_only=True), ClientPeer()
    room = await connect(hub, file_id, viewer)
    await connect(hub, file_id, member)
    hub.receive(room, viewer, viewer.edit(0, "evil"))
    hub.receive(room, viewer, viewer.edit(0, "more"))
    denied = [f for f in viewer.frames if f[0] == protocol.MSG_AUTH]
    assert denied == [protocol.permission_denied("read-only access")]
    assert member.value() == "x"
    assert room.read_text() == "x"
    assert not viewer.closed


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x00\x02\x80", 4400),  # truncated varint
        (b"\x00\x02\x03\x05\x01\x02", 4400),  # garbage update
        (b"\x09\x00", 4400),  # unknown type
        (b"\x00\x00\x02\xff\xff", 4400),  # garbage state vector
        (b"\x01\x03\x01\x01", 4400),  # truncated awareness
        (protocol.sync_update(b"\x00" * 5000), 4413),  # over max_message_bytes
    ],
)
async def test_bad_frames_close_only_the_sender(hub: DocumentHub, store: CountingStore,
                                                raw: bytes, code: int) -> None:
    file_id = new_file(store, "intact")
    bad, good = ClientPeer(), ClientPeer()
    room = await connect(hub, file_id, bad)
    await connect(hub, file_id, good)
    hub.receive(room, bad, raw)
    assert bad.close_code == code
    assert good.close_code is None
    hub.receive(room, good, good.edit(6, "!"))
    assert room.read_text() == "intact!"


async def test_document_size_limit(hub: DocumentHub, store: CountingStore) -> None:
    file_id = new_file(store)
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    for _ in range(6):
        hub.receive(room, peer, peer.edit(0, "y" * 3000))
        if peer.closed:
            break
    assert peer.close_code == 4413
    assert len(room.read_text()) <= 16384


async def test_awareness_known_states_and_removal(hub: DocumentHub,
                                                  store: CountingStore) -> None:
    file_id = new_file(store)
    a = ClientPeer()
    room = await connect(hub, file_id, a)
    update = protocol.encode_awareness([protocol.AwarenessEntry(77, 1, '{"user":"a"}')])
    hub.receive(room, a, protocol.awareness_frame(update))
    b = ClientPeer()
    await connect(hub, file_id, b)
    assert b.awareness == {77: '{"user":"a"}'}
    hub.receive(room, b, protocol.query_awareness())
    hub.leave(room, a)
    assert b.awareness == {77: "null"}


def _awareness(client_id: int, clock: int, state: str) -> bytes:
    return protocol.awareness_frame(
        protocol.encode_awareness([protocol.AwarenessEntry(client_id, clock, state)])
    )


async def test_awareness_echoes_are_not_relayed(hub: DocumentHub, store: CountingStore) -> None:
    """Stock y-websocket clients send back every awareness update they receive: a state
    the room already holds (same clock) goes no further, or each change costs a relay per
    peer squared."""
    file_id = new_file(store)
    a, b, c = ClientPeer(), ClientPeer(), ClientPeer()
    room = await connect(hub, file_id, a)
    await connect(hub, file_id, b)
    await connect(hub, file_id, c)
    sent_before = [len(p.frames) for p in (a, b, c)]
    hub.receive(room, a, _awareness(7, 1, '{"cursor":1}'))
    assert b.awareness[7] == c.awareness[7] == '{"cursor":1}'
    hub.receive(room, b, _awareness(7, 1, '{"cursor":1}'))  # b's echo
    hub.receive(room, c, _awareness(7, 1, '{"cursor":1}'))  # c's echo
    assert [len(p.frames) - n for p, n in zip((a, b, c), sent_before, strict=True)] == [0, 1, 1]
    # A frame mixing a stale entry with a new one relays only the new one.
    hub.receive(room, b, protocol.awareness_frame(protocol.encode_awareness([
        protocol.AwarenessEntry(7, 1, '{"cursor":1}'),
        protocol.AwarenessEntry(8, 1, '{"cursor":2}'),
    ])))
    relayed = protocol.parse_awareness(protocol.parse_frame(c.frames[-1]).payload)
    assert [(e.client_id, e.clock) for e in relayed] == [(8, 1)]
    assert a.awareness[8] == '{"cursor":2}'


async def test_a_leaving_peer_removes_only_the_states_it_introduced(
    hub: DocumentHub, store: CountingStore
) -> None:
    """A socket that echoed other clients' states does not take them along when it
    closes: only the client ids that first reached the room through it are removed."""
    file_id = new_file(store)
    a, b, c = ClientPeer(), ClientPeer(), ClientPeer()
    room = await connect(hub, file_id, a)
    await connect(hub, file_id, b)
    await connect(hub, file_id, c)
    hub.receive(room, a, _awareness(1, 1, '{"user":"a"}'))
    hub.receive(room, b, _awareness(2, 1, '{"user":"b"}'))
    hub.receive(room, b, _awareness(1, 1, '{"user":"a"}'))  # b echoes a's state
    hub.leave(room, b)
    assert c.awareness == {1: '{"user":"a"}', 2: "null"}
    assert a.awareness[2] == "null"
    # A newer state of client 1 from another user's socket is not relayed (client 1 is
    # a's), and c's close removes nothing.
    hub.receive(room, c, _awareness(1, 2, '{"user":"a","cursor":4}'))
    frames_before = len(a.frames)
    hub.leave(room, c)
    assert len(a.frames) == frames_before
    assert 1 not in a.awareness  # c's forged state of a's client never reached a


async def test_write_text_is_a_diff_not_a_rebuild(hub: DocumentHub,
                                                  store: CountingStore) -> None:
    file_id = new_file(store, "line one\nline two\n")
    peer = ClientPeer()
    await connect(hub, file_id, peer)
    offline = ClientPeer()
    offline.doc.apply_update(peer.doc.get_update())
    await hub.write_text(file_id, "line one\nline 2\nline three\n", str(uuid.uuid4()))
    assert peer.value() == "line one\nline 2\nline three\n"
    assert store.files[file_id].content == "line one\nline 2\nline three\n"
    # A client holding the old history merges without duplicating anything.
    offline.doc.apply_update(peer.doc.get_update())
    assert offline.value() == "line one\nline 2\nline three\n"


async def test_save_version_and_auto_versions(hub: DocumentHub, store: CountingStore) -> None:
    file_id = new_file(store)
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    hub.receive(room, peer, peer.edit(0, "v1"))
    row = await hub.save_version(file_id, peer.user_id, "first")
    assert (row["version_number"], row["content"], row["change_message"]) == (1, "v1", "first")
    for i in range(5):
        hub.receive(room, peer, peer.edit(0, str(i)))
    await eventually(lambda: len(store.files[file_id].versions) >= 2)
    auto = store.files[file_id].versions[1]
    assert auto["changed_by"] == uuid.UUID(peer.user_id)
    assert auto["change_message"] is None
    await asyncio.sleep(0.2)
    assert len(store.files[file_id].versions) == 2  # not one per keystroke


async def test_idle_room_is_compacted_and_unloaded(hub: DocumentHub,
                                                   store: CountingStore) -> None:
    file_id = new_file(store)
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    hub.receive(room, peer, peer.edit(0, "bye"))
    hub.leave(room, peer)
    await eventually(lambda: file_id not in hub.rooms)
    assert store.files[file_id].content == "bye"
    assert await hub.read_text(file_id) == "bye"


async def test_failed_compaction_keeps_room_and_retries(hub: DocumentHub,
                                                        store: CountingStore) -> None:
    file_id = new_file(store)
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    hub.receive(room, peer, peer.edit(0, "precious"))
    store.fail_next = 3
    hub.leave(room, peer)
    await eventually(lambda: file_id not in hub.rooms, timeout=6)
    assert store.files[file_id].content == "precious"


async def test_revoked_member_is_closed(hub: DocumentHub, store: CountingStore) -> None:
    file_id = new_file(store)
    peer = ClientPeer()
    store.roles[(peer.user_id, peer.workspace_id)] = "member"
    await connect(hub, file_id, peer)
    await asyncio.sleep(0.1)
    assert not peer.closed
    store.roles[(peer.user_id, peer.workspace_id)] = "viewer"
    await eventually(lambda: peer.read_only)
    del store.roles[(peer.user_id, peer.workspace_id)]
    started = time.monotonic()
    await eventually(lambda: peer.close_code == 4403)
    assert time.monotonic() - started < 1.0


async def test_close_file_closes_everyone(hub: DocumentHub, store: CountingStore) -> None:
    file_id = new_file(store)
    peers = [ClientPeer(), ClientPeer()]
    for p in peers:
        await connect(hub, file_id, p)
    await hub.close_file(file_id, 4404, "file deleted")
    assert [p.close_code for p in peers] == [4404, 4404]


async def test_stop_closes_with_1012_and_persists(store: CountingStore) -> None:
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(store, broker, CollabConfig(compact_after_s=60, log_flush_ms=1000))
    await h.start()
    file_id = new_file(store)
    peer = ClientPeer()
    room = await connect(h, file_id, peer)
    h.receive(room, peer, peer.edit(0, "unsaved"))
    await h.stop()
    await broker.close()
    assert peer.close_code == 1012
    assert store.files[file_id].content == "unsaved"


@contextlib.asynccontextmanager
async def two_hubs(
    store: MemoryStore, bus: LocalBus, names: str = "ab", config: CollabConfig = FAST
) -> AsyncIterator[list[DocumentHub]]:
    """Two (or one per name) processes' hubs on one store and one broker bus, stopped at the
    end."""
    started: list[tuple[DocumentHub, LocalBroker]] = []
    try:
        for name in names:
            broker = LocalBroker(name, bus)
            await broker.start()
            h = DocumentHub(store, broker, config)
            await h.start()
            started.append((h, broker))
        yield [h for h, _ in started]
    finally:
        for h, broker in started:
            await h.stop()
            await broker.close()


async def test_gap_repair_between_two_hubs(store: CountingStore) -> None:
    bus = LocalBus()
    dropped: list[bytes] = []

    def drop_updates(sender: str, channel: str, payload: bytes) -> bool:
        if payload[:2] == b"\x00\x02" and len(dropped) < 3:
            dropped.append(payload)
            return False
        return True

    async with two_hubs(store, bus) as hubs:
        file_id = new_file(store, "base")
        pa, pb = ClientPeer(), ClientPeer()
        room_a = await connect(hubs[0], file_id, pa)
        room_b = await connect(hubs[1], file_id, pb)
        bus.filter = drop_updates
        for i in range(3):
            hubs[0].receive(room_a, pa, pa.edit(0, f"a{i}"))
        hubs[1].receive(room_b, pb, pb.edit(len(pb.value()), "!"))
        await eventually(lambda: len(dropped) == 3)  # publish_nowait delivers from a task
        assert pb.value() != pa.value()
        started = time.monotonic()
        await eventually(lambda: pa.value() == pb.value(), timeout=FAST.gap_repair_s * 3 + 1)
        assert time.monotonic() - started <= FAST.gap_repair_s * 2 + 0.5
        assert pa.value() == "a2a1a0base!"


def test_merge_handles_log_rows_out_of_causal_order() -> None:
    """Rows from two processes can land in the log out of causal order."""
    from collab.merge import build_from_text, merge_document

    state, _ = build_from_text("seed")
    clients = [ClientPeer() for _ in range(3)]
    for c in clients:
        c.doc.apply_update(state)
    updates: list[bytes] = []
    script = [(0, 0, "a"), (1, 2, "b"), (0, 1, "s"), (2, 4, "a"), (1, 0, "a")]
    for who, index, value in script:
        frame = clients[who].edit(index, value)
        updates.append(protocol.parse_frame(frame).payload)
        for other in clients:  # everybody syncs after each edit
            for u in updates:
                other.doc.apply_update(u)
    expected = clients[0].value()
    merged = merge_document(state, list(reversed(updates)), None)
    assert merged.text == expected


def compactions(source: str) -> float:
    from collab import metrics

    value: float = metrics.COMPACTIONS.labels(source)._value.get()
    return value


async def test_compaction_merges_what_the_room_holds(hub: DocumentHub,
                                                     store: CountingStore) -> None:
    """Alone on a file, a process compacts from memory: nothing is read back."""
    file_id = new_file(store, "seed")
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    memory_before, store_before = compactions("memory"), compactions("store")
    for i in range(5):
        hub.receive(room, peer, peer.edit(len(peer.value()), f" {i}"))
        await eventually(lambda: not store.files[file_id].log and room.log.since is None)
    assert store.files[file_id].content == "seed 0 1 2 3 4"
    assert compactions("memory") - memory_before >= 5
    assert compactions("store") == store_before
    assert room.stored.own_rows == []
    assert room.stored.state == store.files[file_id].state


async def test_compactions_ride_the_regular_group_commit() -> None:
    """A compaction due while its room has updates queued waits for the group commit that
    writes them instead of writing the log itself: one insert per window, however many
    rooms compact."""

    class CountingAppends(CountingStore):
        def __init__(self) -> None:
            super().__init__()
            self.appends = 0

        async def append_updates(self, rows: Any) -> list[int | None]:
            self.appends += 1
            await asyncio.sleep(0.001)  # a round trip
            return await super().append_updates(rows)

    store = CountingAppends()
    broker = LocalBroker("solo")
    await broker.start()
    window = 0.2  # two maintenance ticks: compactions fall due between group commits
    h = DocumentHub(store, broker, CollabConfig(log_flush_ms=int(window * 1000),
                                                compact_after_s=0.1))
    await h.start()
    try:
        rooms = []
        for _ in range(4):
            peer = ClientPeer()
            rooms.append((await connect(h, new_file(store), peer), peer))
        memory_before = compactions("memory")
        started = time.monotonic()
        # 1.5 s, or longer on a loaded machine until ten compactions are in (the bound on
        # inserts below scales with the time taken).
        while (now := time.monotonic() - started) < 1.5 or (
            compactions("memory") - memory_before < 10 and now < 15
        ):
            # Every room always has an update queued; their compactions fall due at
            # different times (the rooms start 25 ms apart).
            for i, (room, peer) in enumerate(rooms):
                if now >= i * 0.025:
                    h.receive(room, peer, peer.edit(len(peer.value()), "x"))
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        appends = store.appends
    finally:
        await h.stop()
        await broker.close()
    assert compactions("memory") - memory_before >= 10  # 4 rooms, one every window or two
    # The flush loop sleeps a whole window between inserts: at most elapsed / window of them
    # (without waiting, every compaction added one: 22-25 in all here).
    # A few more: an edit can land between the insert and the compaction that waited for it.
    assert appends <= elapsed / window + 5
    for room, peer in rooms:
        assert store.files[room.file_id].content == peer.value()


async def test_another_writer_sends_compaction_to_the_store(store: CountingStore) -> None:
    """With two processes on one file, each merges what the store holds; nothing is lost."""
    file_id = new_file(store, "")
    async with two_hubs(store, LocalBus()) as (hub_a, hub_b):
        pa, pb = ClientPeer(), ClientPeer()
        room_a = await connect(hub_a, file_id, pa)
        room_b = await connect(hub_b, file_id, pb)
        store_before = compactions("store")
        for i in range(6):
            hub_a.receive(room_a, pa, pa.edit(0, f"a{i}"))
            hub_b.receive(room_b, pb, pb.edit(len(pb.value()), f"b{i}"))
            await asyncio.sleep(0.1)
        await eventually(lambda: pa.value() == pb.value())
        final = pa.value()
        assert all(f"a{i}" in final and f"b{i}" in final for i in range(6))
        stored = store.files[file_id]
        await eventually(lambda: stored.content == final and not stored.log)
        assert compactions("store") > store_before
    assert store.files[file_id].content == final


async def test_stopping_during_a_group_commit_loses_nothing() -> None:
    """The flush in progress when the hub stops is cancelled; its rows are written after."""

    class SlowFirstAppend(CountingStore):
        def __init__(self) -> None:
            super().__init__()
            self.appending = asyncio.Event()
            self.never = asyncio.Event()
            self.first = True

        async def append_updates(self, rows: Any) -> list[int | None]:
            if self.first:
                self.first = False
                self.appending.set()
                await self.never.wait()  # the stop cancels the flush right here
            return await super().append_updates(rows)

    store = SlowFirstAppend()
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(store, broker, FAST)
    await h.start()
    file_id = new_file(store, "seed ")
    peer = ClientPeer()
    room = await connect(h, file_id, peer)
    h.receive(room, peer, peer.edit(len(peer.value()), "last words"))
    await asyncio.wait_for(store.appending.wait(), 2)
    await h.stop()
    await broker.close()
    assert store.files[file_id].content == "seed last words"


class ShutdownStore(MemoryStore):
    """Counts the batched final compactions; can fail them, or one file's compactions."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail_batches = False
        self.broken: uuid.UUID | None = None

    async def compact_live_many(self, items: Any) -> Any:
        self.batches.append(len(items))
        if self.fail_batches:
            raise OSError("store unavailable (test)")
        return await super().compact_live_many(items)

    async def compact_live(self, file_id: uuid.UUID, *args: Any, **kwargs: Any) -> Any:
        if file_id == self.broken:
            raise OSError("this file's write fails (test)")
        return await super().compact_live(file_id, *args, **kwargs)

    async def compact(self, file_id: uuid.UUID, *args: Any, **kwargs: Any) -> Any:
        if file_id == self.broken:
            raise OSError("this file's write fails (test)")
        return await super().compact(file_id, *args, **kwargs)


async def _stop_with_edits(
    store: ShutdownStore, files: list[uuid.UUID], at: int = 5
) -> DocumentHub:
    """One edit in each file (logged by the stop's flush), then the hub stops."""
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(store, broker, CollabConfig(compact_after_s=60, log_flush_ms=1000))
    await h.start()
    for n, file_id in enumerate(files):
        peer = ClientPeer()
        room = await connect(h, file_id, peer)
        h.receive(room, peer, peer.edit(at, f"edit {n}"))
    await h.stop()
    await broker.close()
    return h


async def test_stop_compacts_every_room_in_batches() -> None:
    store = ShutdownStore()
    files = [new_file(store, "seed ") for _ in range(250)]
    h = await _stop_with_edits(store, files)
    assert store.batches == [100, 100, 50], "a statement per 100 rooms, not one per room"
    for n, file_id in enumerate(files):
        assert store.files[file_id].content == f"seed edit {n}"
        assert store.files[file_id].log == [], "every log row merged"
    assert h.rooms == {}


async def test_stop_compacts_room_by_room_when_a_batch_fails() -> None:
    store = ShutdownStore()
    store.fail_batches = True
    files = [new_file(store, "seed ") for _ in range(120)]
    await _stop_with_edits(store, files)
    assert store.batches == [100, 20]
    assert [store.files[f].content for f in files] == [f"seed edit {n}" for n in range(120)]


async def test_stop_keeps_the_log_of_a_room_it_cannot_write_and_writes_the_others() -> None:
    store = ShutdownStore()
    store.fail_batches = True
    files = [new_file(store, "seed ") for _ in range(3)]
    store.broken = sorted(files)[1]
    await _stop_with_edits(store, files)
    for n, file_id in enumerate(files):
        if file_id == store.broken:
            assert store.files[file_id].content == "seed "
            assert len(store.files[file_id].log) == 1, "its edit stays in the log"
        else:
            assert store.files[file_id].content == f"seed edit {n}"


async def test_stop_writes_rooms_with_nothing_stored_yet() -> None:
    """Empty files edited since their load have no stored state: their first states are
    inserted in the same batches as the others' (generation None), every one written."""
    store = ShutdownStore()
    files = [new_file(store, "") for _ in range(12)]
    await _stop_with_edits(store, files, at=0)
    assert store.batches == [12]
    assert [store.files[f].content for f in files] == [f"edit {n}" for n in range(12)]
    assert all(store.files[f].log == [] for f in files)


async def test_a_new_empty_file_compacts_from_memory(hub: DocumentHub,
                                                     store: CountingStore) -> None:
    """Nothing stored at load (an empty file): the first compaction inserts the state from
    what the room holds, and so do the next ones."""
    file_id = new_file(store, "")
    peer = ClientPeer()
    room = await connect(hub, file_id, peer)
    assert store.files[file_id].state is None and room.stored.empty
    memory_before, store_before = compactions("memory"), compactions("store")
    for i in range(3):
        hub.receive(room, peer, peer.edit(len(peer.value()), f"{i} "))
        await eventually(lambda: not store.files[file_id].log and room.log.since is None)
    assert store.files[file_id].content == "0 1 2 "
    assert compactions("memory") - memory_before >= 3
    assert compactions("store") == store_before
    assert room.stored.state == store.files[file_id].state and not room.stored.empty
