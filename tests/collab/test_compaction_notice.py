"""Compaction notices between processes (collab/relay.py): of several processes editing one
file, the one that compacted tells the others, which drop the merged rows and wait a period."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from broker.local import LocalBroker, LocalBus
from collab import protocol
from collab.config import CollabConfig
from collab.relay import MSG_COMPACTED, compaction_notice, parse_compaction_notice
from collab.store import MemoryStore
from tests.collab.peers import ClientPeer
from tests.collab.test_hub import connect, eventually, new_file, two_hubs

# Nothing compacts on its own: the tests compact when they choose.
MANUAL = CollabConfig(
    log_flush_ms=5, compact_after_s=3600, idle_unload_s=3600, gap_repair_s=3600,
    role_check_s=3600, version_bucket_s=3600,
)


def test_notice_round_trip() -> None:
    ids = [7, 3, 1_000_000, 4, 129]
    notice = compaction_notice(ids)
    assert notice[0] == MSG_COMPACTED
    assert parse_compaction_notice(notice) == sorted(ids)
    assert parse_compaction_notice(compaction_notice([])) == []


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00\x02\x01a", b"\x64", b"\x64\x02\x05", b"\x64\x01\x05\x06", b"\x64\x01\xff"],
)
def test_malformed_notices_are_refused(bad: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        parse_compaction_notice(bad)


async def test_one_compaction_serves_every_process_editing_the_file() -> None:
    store = MemoryStore()
    file_id = new_file(store, "seed")
    async with two_hubs(store, LocalBus(), "abc", MANUAL) as (a, b, c):
        peers = [ClientPeer() for _ in range(3)]
        rooms = [await connect(h, file_id, p) for h, p in zip((a, b, c), peers, strict=True)]
        for hub, room, peer in zip((a, b, c), rooms, peers, strict=True):
            hub.receive(room, peer, peer.edit(len(peer.value()), f" {hub.broker.instance_id}"))
            await hub.flush()
        await eventually(lambda: len({p.value() for p in peers}) == 1)
        assert all(room.stored.own_rows for room in rooms)
        postponed_from = [room.log.since for room in rooms[1:]]
        assert None not in postponed_from

        await a.compactor.compact(rooms[0])

        stored = store.files[file_id]
        assert not stored.log  # a merged every process's rows (read from the store)
        assert stored.content == peers[0].value()
        # b and c hear of it: the rows are gone from what they would merge, and their own
        # compaction waits a whole period from now.
        await eventually(lambda: not rooms[1].stored.own_rows and not rooms[2].stored.own_rows)
        for room, before in zip(rooms[1:], postponed_from, strict=True):
            assert room.log.since is not None and before is not None
            assert room.log.since > before

        # Editing goes on; b's compaction (when due) still merges everything.
        b.receive(rooms[1], peers[1], peers[1].edit(0, ">"))
        await b.flush()
        await b.compactor.compact(rooms[1])
        await eventually(lambda: len({p.value() for p in peers}) == 1)
        assert not stored.log
        final = peers[0].value()
        assert stored.content == final and final.startswith(">seed")
        assert all(f" {name}" in final for name in "abc")


async def test_a_lost_notice_costs_only_a_redundant_compaction() -> None:
    store = MemoryStore()
    file_id = new_file(store, "")
    bus = LocalBus()
    async with two_hubs(store, bus, "ab", MANUAL) as (a, b):
        pa, pb = ClientPeer(), ClientPeer()
        room_a, room_b = await connect(a, file_id, pa), await connect(b, file_id, pb)
        a.receive(room_a, pa, pa.edit(0, "x"))
        b.receive(room_b, pb, pb.edit(0, "y"))
        await a.flush()
        await b.flush()
        await eventually(lambda: pa.value() == pb.value())
        dropped: list[bytes] = []

        def drop_notices(sender: str, channel: str, payload: bytes) -> bool:
            if payload[:1] == bytes((MSG_COMPACTED,)):
                dropped.append(payload)
                return False
            return True

        bus.filter = drop_notices
        await a.compactor.compact(room_a)
        await eventually(lambda: bool(dropped))
        assert room_b.stored.own_rows  # b never heard: it still lists its (merged) row
        await b.compactor.compact(room_b)  # its own compaction reads the store: no harm
        assert not store.files[file_id].log
        assert store.files[file_id].content == pa.value() == pb.value()
        assert not room_b.stored.own_rows


async def test_a_malformed_notice_from_the_broker_changes_nothing() -> None:
    store = MemoryStore()
    file_id = new_file(store, "text")
    bus = LocalBus()
    async with two_hubs(store, bus, "a", MANUAL) as (a,):
        peer = ClientPeer()
        room = await connect(a, file_id, peer)
        a.receive(room, peer, peer.edit(0, "x"))
        await a.flush()
        rows, since = list(room.stored.own_rows), room.log.since
        rogue = LocalBroker("rogue", bus)
        await rogue.start()
        try:
            await rogue.publish(room.channel, b"\x64\x02\x05")
            await asyncio.sleep(0.05)
        finally:
            await rogue.close()
        assert room.stored.own_rows == rows and room.log.since == since
        assert peer.value() == "xtext"
        assert uuid.UUID(room.channel.removeprefix("doc:")) == file_id
