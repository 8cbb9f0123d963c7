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
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping

from broker.interface import Broker
from collab import metrics, protocol
from collab.awareness import awareness_relay
from collab.room import Room

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "doc:"


class BrokerRelay:
    def __init__(self, broker: Broker, rooms: Mapping[uuid.UUID, Room], stats: metrics.HubStats):
        self.broker = broker
        self.rooms = rooms
        self.stats = stats
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
