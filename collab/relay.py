"""The broker relay of the document rooms, with gap repair between nodes.

Updates and awareness from this node's clients are published on ``doc:{file_id}``;
frames from the broker are applied and relayed to local peers, never logged or
re-published. A broken broker never breaks local editing: publishing failures are logged.

Gap repair (the bound): every loaded room publishes its Step1 (state vector) after
loading and after each broker (re)subscribe; every ``gap_repair_s`` each room whose
document changed since its last Step1 publishes it again. A node receiving a Step1 answers
with a Step2 of what the asker lacks (only if non-empty) and, if the asker has seen
something it has not, publishes its own Step1 at once. So an update dropped between live
nodes reaches every node within ``gap_repair_s`` plus two broker round trips (5 s by
default), provided the broker delivers the repair messages themselves: the node that
holds the update changed since its last Step1, so its next round carries it. Rooms
nobody edits cost the round nothing (no state vector encoded, nothing published).

Compaction notices: a node that compacted a room publishes the ids of the log rows it
merged (``MSG_COMPACTED``, a message type y-protocol does not use, never sent to clients).
The other nodes drop those rows from what they would merge and put their own compaction of
the room off by a period: of several processes editing one file, one compacts per period
(each compaction of a file others wrote reads and merges the store: O(document) work that
every process repeated). Losing a notice only costs a redundant compaction.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence

from broker.interface import Broker
from collab import metrics, protocol
from collab.awareness import awareness_relay
from collab.room import Room

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "doc:"
MSG_COMPACTED = 100  # node to node only: the first byte of a compaction notice


def compaction_notice(merged_ids: Sequence[int]) -> bytes:
    """``MSG_COMPACTED``, the count, then the merged row ids ascending, delta-coded."""
    out = bytearray((MSG_COMPACTED,))
    out += protocol.write_var_uint(len(merged_ids))
    previous = 0
    for row_id in sorted(merged_ids):
        out += protocol.write_var_uint(row_id - previous)
        previous = row_id
    return bytes(out)


def parse_compaction_notice(payload: bytes) -> list[int]:
    """The row ids of a notice; ``ProtocolError`` on a malformed one."""
    if not payload or payload[0] != MSG_COMPACTED:
        raise protocol.ProtocolError("not a compaction notice")
    count, pos = protocol.read_var_uint(payload, 1)
    ids: list[int] = []
    row_id = 0
    for _ in range(count):
        delta, pos = protocol.read_var_uint(payload, pos)
        row_id += delta
        ids.append(row_id)
    if pos != len(payload):
        raise protocol.ProtocolError("trailing bytes after the notice")
    return ids


CompactedElsewhere = Callable[[Room, list[int]], None]


class BrokerRelay:
    def __init__(
        self,
        broker: Broker,
        rooms: Mapping[uuid.UUID, Room],
        stats: metrics.HubStats,
        on_compacted: CompactedElsewhere | None = None,
    ):
        self.broker = broker
        self.rooms = rooms
        self.stats = stats
        self.on_compacted = on_compacted
        # Each room's ``version`` when its last Step1 went out.
        self._announced: dict[Room, int] = {}

    async def subscribe(self, room: Room) -> None:
        await self.broker.subscribe(room.channel, self._on_broker)
        # Ask other nodes for whatever they hold beyond the store (their flush window).
        await self._announce(room)

    async def unsubscribe(self, room: Room) -> None:
        self._announced.pop(room, None)
        with contextlib.suppress(Exception):
            await self.broker.unsubscribe(room.channel, self._on_broker)

    def publish_nowait(self, channel: str, frame: bytes) -> None:
        try:
            self.broker.publish_nowait(channel, frame)
        except Exception as exc:  # a broken broker must not break local editing
            log.warning("publish on %s failed: %s", channel, exc)

    async def publish(self, channel: str, frame: bytes) -> None:
        try:
            await self.broker.publish(channel, frame)
        except Exception as exc:  # a broken broker must not break local editing
            log.warning("publish on %s failed: %s", channel, exc)

    async def gap_repair(self) -> None:
        """Every loaded room's Step1 (run after every broker resubscribe)."""
        for room in list(self.rooms.values()):
            await self._announce(room)

    async def repair_changed(self) -> None:
        """The Step1 of every room whose document changed since its last one (the round)."""
        announced = self._announced
        rooms = self.rooms
        for room in list(rooms.values()):
            if announced.get(room) != room.version and rooms.get(room.file_id) is room:
                await self._announce(room)

    async def _announce(self, room: Room) -> None:
        self._announced[room] = room.version
        await self.publish(room.channel, protocol.sync_step1(room.state_vector()))

    async def _on_broker(self, channel: str, payload: bytes) -> None:
        file_id = uuid.UUID(channel[len(CHANNEL_PREFIX):])
        room = self.rooms.get(file_id)
        if room is None:
            return
        stats = self.stats
        try:
            if payload and payload[0] == MSG_COMPACTED:
                ids = parse_compaction_notice(payload)
                if self.on_compacted is not None:
                    self.on_compacted(room, ids)
                return
            frame = protocol.parse_frame(payload)
            if frame.kind == protocol.MSG_SYNC:
                if frame.sub == protocol.SYNC_STEP1:
                    await self._answer_step1(room, frame.payload)
                    return
                if frame.payload == protocol.EMPTY_UPDATE:
                    return
                room.apply(frame.payload)
                out = protocol.as_update_frame(frame, payload)
                delivered = room.broadcast(out)
                stats.updates_in_broker += 1
                stats.updates_out += delivered
                stats.bytes_out += delivered * len(out)
            elif frame.kind == protocol.MSG_AWARENESS:
                stats.awareness_in_broker += 1
                entries = protocol.parse_awareness(frame.payload)
                relay = awareness_relay(payload, entries, room.awareness.apply_remote(entries))
                if relay is None:
                    return
                room.awareness.remember(relay)
                delivered = room.broadcast(relay)
                stats.bytes_out += delivered * len(relay)
        except protocol.ProtocolError as exc:
            log.warning("bad frame from the broker on %s: %s", channel, exc)

    async def _answer_step1(self, room: Room, state_vector: bytes) -> None:
        missing = room.diff(state_vector)
        if missing != protocol.EMPTY_UPDATE:
            metrics.GAP_REPAIRS.inc()
            await self.publish(room.channel, protocol.sync_step2(missing))
        ours = protocol.decode_state_vector(room.state_vector())
        if protocol.lacks(ours, protocol.decode_state_vector(state_vector)):
            await self.publish(room.channel, protocol.sync_step1(room.state_vector()))
