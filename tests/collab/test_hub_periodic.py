"""The hub's periodic work is proportional to the rooms that have some, and echoes are cheap.

The maintenance tick is driven by hand here (the hub is not started), so each step is one
tick and nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from broker.local import LocalBroker, LocalBus
from collab import protocol
from collab.awareness import RECENT_FRAMES
from collab.config import CollabConfig
from collab.hub import DocumentHub
from collab.relay import MSG_COMPACTED
from collab.store import MemoryStore
from tests.collab.peers import ClientPeer

# Everything due at once: compaction, versions and unloading wait on no clock.
NOW = CollabConfig(log_flush_ms=5, compact_after_s=0.0, idle_unload_s=0.0, version_bucket_s=0.0)


@pytest.fixture
async def hub() -> AsyncIterator[DocumentHub]:
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(MemoryStore(), broker, NOW)  # not started: the test runs the ticks
    yield h
    await h.stop()
    await broker.close()


def new_file(hub: DocumentHub, content: str = "") -> uuid.UUID:
    assert isinstance(hub.store, MemoryStore)
    file_id = uuid.uuid4()
    hub.store.add_file(file_id, content)
    return file_id


async def test_settled_rooms_are_not_walked_yet_still_compact_version_and_unload(
    hub: DocumentHub,
) -> None:
    store = hub.store
    assert isinstance(store, MemoryStore)
    quiet_id, busy_id = new_file(hub), new_file(hub)
    quiet_peer, busy_peer = ClientPeer(), ClientPeer()
    quiet = await hub.join(quiet_id, quiet_peer)
    busy = await hub.join(busy_id, busy_peer)
    assert hub.watched == {quiet, busy}  # just loaded: watched until they have peers
    await hub._maintenance_tick()
    assert hub.watched == frozenset()  # both settled: the tick walks nothing

    # An edit wakes its room only; the tick logs, compacts and versions it, then lets go.
    hub.receive(busy, busy_peer, busy_peer.edit(0, "hello"))
    await hub._maintenance_tick()
    assert store.files[busy_id].content == "hello"
    assert [v["content"] for v in store.files[busy_id].versions] == ["hello"]
    assert busy not in hub.watched
    assert quiet not in hub.watched
    await hub._maintenance_tick()
    assert hub.watched == frozenset()

    # A room whose last peer left is watched again and unloads, its text persisted.
    hub.receive(quiet, quiet_peer, quiet_peer.edit(0, "bye"))
    hub.leave(quiet, quiet_peer)
    assert quiet in hub.watched
    await hub._maintenance_tick()
    assert quiet_id not in hub.rooms
    assert store.files[quiet_id].content == "bye"
    assert hub.watched == frozenset()
    assert busy_id in hub.rooms  # the other room, settled, is untouched


async def test_a_failed_compaction_keeps_the_room_watched(
    hub: DocumentHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = new_file(hub)
    peer = ClientPeer()
    room = await hub.join(file_id, peer)
    hub.receive(room, peer, peer.edit(0, "x"))

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr(hub.compactor, "compact", broken)
    await hub._maintenance_tick()
    assert room in hub.watched  # retried after its backoff, not forgotten
    monkeypatch.undo()
    room.stored.retry_at = 0.0
    await hub._maintenance_tick()
    assert hub.store.files[file_id].content == "x"  # type: ignore[attr-defined]
    assert room not in hub.watched


async def test_role_check_pairs_follow_joins_and_leaves(hub: DocumentHub) -> None:
    file_id = new_file(hub)
    workspace = uuid.uuid4()
    a1 = ClientPeer("user-a", workspace_id=workspace)
    a2 = ClientPeer("user-a", workspace_id=workspace)
    b = ClientPeer("user-b", workspace_id=workspace)
    room = await hub.join(file_id, a1)
    await hub.join(file_id, a2)
    await hub.join(file_id, b)
    assert hub.connected_pairs == {("user-a", workspace): 2, ("user-b", workspace): 1}
    store = hub.store
    assert isinstance(store, MemoryStore)
    store.roles[("user-a", workspace)] = "member"  # user-b is no member any more
    await hub._check_roles()
    assert (a1.close_code, a2.close_code, b.close_code) == (None, None, 4403)
    for peer in (a1, a2, b):
        hub.leave(room, peer)
    assert hub.connected_pairs == {}


def _awareness(entries: list[tuple[int, int, str]]) -> bytes:
    return protocol.awareness_frame(
        protocol.encode_awareness([protocol.AwarenessEntry(c, k, s) for c, k, s in entries])
    )


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    calls = 0
    parse = protocol.parse_frame

    def counting(raw: bytes) -> protocol.Frame:
        nonlocal calls
        if sys._getframe(1).f_code is DocumentHub.receive.__code__:  # not the test clients'
            calls += 1
        return parse(raw)

    monkeypatch.setattr(protocol, "parse_frame", counting)
    return lambda: calls


async def test_echoes_of_relayed_awareness_are_dropped_unparsed(
    hub: DocumentHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = new_file(hub)
    a, b, c = ClientPeer(), ClientPeer(), ClientPeer()
    room = await hub.join(file_id, a)
    await hub.join(file_id, b)
    await hub.join(file_id, c)
    parses = _count_parses(monkeypatch)
    renewal = _awareness([(7, 1, '{"cursor":1}')])
    hub.receive(room, a, renewal)
    assert b.awareness[7] == c.awareness[7] == '{"cursor":1}'
    assert parses() == 1
    sent = [len(p.frames) for p in (a, b, c)]
    hub.receive(room, b, b.frames[-1])  # b's echo: the bytes it was sent
    hub.receive(room, c, renewal)  # c's echo
    assert parses() == 1  # not parsed
    assert [len(p.frames) for p in (a, b, c)] == sent  # not relayed

    # A newer state is parsed and relayed as before; its echo is skipped in turn.
    newer = _awareness([(7, 2, '{"cursor":9}')])
    hub.receive(room, a, newer)
    assert parses() == 2 and b.awareness[7] == c.awareness[7] == '{"cursor":9}'
    hub.receive(room, b, newer)
    assert parses() == 2
    # The old bytes again, from anyone: still stale, nothing changes.
    hub.receive(room, c, renewal)
    assert b.awareness[7] == '{"cursor":9}'

    # A newcomer's echo of the known states it was sent on joining, and the echoes of a
    # removal, are skipped too.
    d = ClientPeer()
    await hub.join(file_id, d)
    assert d.awareness == {7: '{"cursor":9}'}
    hub.receive(room, d, d.frames[-1])
    assert parses() == 2
    hub.leave(room, a)
    assert b.awareness[7] == "null"
    hub.receive(room, b, b.frames[-1])
    assert parses() == 2
    assert d.awareness[7] == "null"


async def test_an_old_echo_past_the_remembered_frames_is_still_dropped(
    hub: DocumentHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = new_file(hub)
    a, b = ClientPeer(), ClientPeer()
    room = await hub.join(file_id, a)
    await hub.join(file_id, b)
    first = _awareness([(1, 1, '{"n":0}')])
    hub.receive(room, a, first)
    for clock in range(2, RECENT_FRAMES + 3):
        hub.receive(room, a, _awareness([(1, clock, f'{{"n":{clock}}}')]))
    assert first not in room.awareness.recent
    parses = _count_parses(monkeypatch)
    sent = len(a.frames)
    hub.receive(room, b, first)  # parsed now, and dropped as stale by the full path
    assert parses() == 1
    assert len(a.frames) == sent
    assert b.awareness[1] == f'{{"n":{RECENT_FRAMES + 2}}}'


async def test_gap_repair_rounds_announce_only_changed_rooms() -> None:
    bus = LocalBus()
    step1s: list[str] = []

    def watch(_sender: str, channel: str, payload: bytes) -> bool:
        if payload[:1] == bytes((MSG_COMPACTED,)):
            return True  # node to node (collab/relay.py), not y-protocol
        frame = protocol.parse_frame(payload)
        if frame.kind == protocol.MSG_SYNC and frame.sub == protocol.SYNC_STEP1:
            step1s.append(channel)
        return True

    bus.filter = watch
    brokers = [LocalBroker("a", bus), LocalBroker("b", bus)]
    for broker in brokers:
        await broker.start()
    store = MemoryStore()
    hub_a, hub_b = (DocumentHub(store, broker, NOW) for broker in brokers)
    try:
        quiet_id, busy_id = uuid.uuid4(), uuid.uuid4()
        store.add_file(quiet_id, "")
        store.add_file(busy_id, "")
        writer, reader = ClientPeer(), ClientPeer()
        busy = await hub_a.join(busy_id, writer)
        await hub_a.join(quiet_id, ClientPeer())
        busy_b = await hub_b.join(busy_id, reader)
        hub_b.receive(busy_b, reader, reader.step1())
        assert len(step1s) == 3  # one on each load
        await hub_a.relay.repair_changed()
        assert len(step1s) == 3  # nothing changed: the round publishes nothing

        # An update hub_b never got (its publish lost): the next round of hub_a carries
        # the Step1 that makes hub_b ask, and hub_b's client receives the edit.
        bus.filter = lambda _s, _c, payload: watch(_s, _c, payload) and payload[:2] != b"\x00\x02"
        hub_a.receive(busy, writer, writer.edit(0, "lost"))
        await asyncio.sleep(0.05)
        assert reader.value() == ""
        bus.filter = watch
        await hub_a.relay.repair_changed()
        assert step1s[3:4] == [busy.channel]  # only the room that changed
        for _ in range(100):
            if reader.value() == "lost":
                break
            await asyncio.sleep(0.01)
        assert reader.value() == "lost"
        # A full round (after a broker resubscribe) still announces every room.
        before = len(step1s)
        await hub_a.relay.gap_repair()
        assert len(step1s) - before >= 2
    finally:
        await hub_a.stop()
        await hub_b.stop()
        for broker in brokers:
            await broker.close()


async def test_a_closed_file_is_watched_and_unloads(hub: DocumentHub) -> None:
    file_id = new_file(hub)
    peer = ClientPeer()
    room = await hub.join(file_id, peer)
    hub.receive(room, peer, peer.edit(0, "gone soon"))
    await hub._maintenance_tick()
    await hub._maintenance_tick()
    assert room not in hub.watched
    await hub.close_file(file_id, 4404, "file deleted")
    assert peer.close_code == 4404
    assert room in hub.watched
    hub.leave(room, peer)  # what the socket's transport does once the close went out
    await hub._maintenance_tick()
    assert file_id not in hub.rooms
