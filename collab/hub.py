"""``DocumentHub``: the room manager, and the API other parts use (docs/hubs.md).

It loads and unloads rooms, takes client frames (the hot path), re-checks roles, and
wires the parts that do the rest, each in its own module:

- collab/room.py: one loaded document (doc, awareness, peers), no I/O;
- collab/merge.py: pure CRDT merge/apply;
- collab/update_log.py: the group-commit update-log writer;
- collab/compactor.py: compaction and automatic versions;
- collab/relay.py: the broker relay with gap repair.

Lifecycle of a room
  - The first ``join`` starts one load (a shared task; every simultaneous joiner awaits
    the same one, nothing is held across a client's setup). Nothing is sent to a client
    before the load finished; a failed load closes the joiners with 1011 and stores nothing.
  - A file that has ``files.content`` but no CRDT yet gets its first state built from the
    text exactly once, under the store's per-file lock (re-checked after taking it).
  - The maintenance tick compacts rooms whose log is ``compact_after_s`` old, writes due
    automatic versions, and when the last peer left ``idle_unload_s`` ago, compacts and
    unloads the room; a failed compaction keeps it loaded and retries with backoff.
    It walks only the rooms that may have such work (``_watched``): a room enters when it
    loads, when its log gets a first update since its last compaction and when its last
    peer leaves; it leaves once it has peers, nothing to compact and no version pending.
    Thousands of rooms whose editors only move their cursors cost the tick nothing.

Roles: every ``role_check_s`` the hub re-reads the roles of all connected (user, workspace)
pairs (counted as peers join and leave: the check walks no sockets) in one query; a peer
no longer a member is closed with 4403, a demoted one becomes read-only. This works
across processes without any coupling to the REST code. When the store tracks a version
of the memberships (sql/0064), the hub reads that one number instead and the roles only
when it moved, or every ``_ROLES_RECHECK_S`` regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from broker.interface import Broker
from collab import metrics, protocol
from collab.awareness import awareness_relay
from collab.compactor import Compactor
from collab.config import CollabConfig
from collab.full_sync import FullSyncs
from collab.merge import build_from_text, stored_text
from collab.relay import BrokerRelay, compaction_notice
from collab.room import Peer, Room
from collab.store import Compaction, DocumentStore, FileGone
from collab.text_diff import apply_text
from collab.update_log import UpdateLog
from sockets.close_codes import BAD_MESSAGE, FORBIDDEN, SERVICE_RESTART, TOO_LARGE

log = logging.getLogger(__name__)

# Roles are re-read at least this often even when the membership version did not move.
_ROLES_RECHECK_S = 30.0

# The first byte of an awareness frame (the varUint message type).
_AWARENESS_BYTE = bytes((protocol.MSG_AWARENESS,))

RoleSource = Callable[
    [Sequence[tuple[str, uuid.UUID]]], Awaitable[dict[tuple[str, uuid.UUID], str | None]]
]


class DocumentHub:
    def __init__(
        self,
        store: DocumentStore,
        broker: Broker,
        config: CollabConfig,
        *,
        roles: RoleSource | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.config = config
        self.roles: RoleSource = roles or store.member_roles
        # Only the store's own roles follow its membership version.
        self._roles_version = None if roles is not None else store.member_roles_version
        self._roles_seen: int | None = None  # the version of the last full check
        self._roles_checked_at = 0.0
        self.rooms: dict[uuid.UUID, Room] = {}
        # The rooms the maintenance tick looks at (see the module docstring).
        self._watched: set[Room] = set()
        # Connected peers per (user, workspace): what the role check reads.
        self._pairs: dict[tuple[str, uuid.UUID], int] = {}
        self._loading: dict[uuid.UUID, asyncio.Task[Room]] = {}
        self.stats = metrics.HubStats()
        self.updates = UpdateLog(store, config.log_flush_ms)
        self.compactor = Compactor(store, config, self.updates, self._compacted_here)
        self.relay = BrokerRelay(broker, self.rooms, self.stats, self._compacted_elsewhere)
        self.full_syncs = FullSyncs(config.shared_sync_min_bytes, config.shared_sync_keep_s,
                                    config.deflate_level)
        # Rooms with awareness renewals held back, by when they go out (collab/awareness.py).
        self._renewals_due: deque[tuple[float, Room]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._sample = 0

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.broker.on_resubscribe(self.relay.gap_repair)
        loops: list[tuple[str, Callable[[], Awaitable[None]], float]] = [
            ("log-writer", self.updates.tick, self.config.log_flush_ms / 1000),
            ("maintenance", self._maintenance_tick, 0.1),
            ("roles", self._check_roles, self.config.role_check_s),
            ("gap-repair", self.relay.repair_changed, self.config.gap_repair_s),
        ]
        for name, tick, period in loops:
            self._tasks.append(asyncio.create_task(self._every(period, tick), name=name))

    async def stop(self) -> None:
        """Close sockets with 1012 (clients reconnect), flush, compact every room, unload."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for load in list(self._loading.values()):
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await load
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                self._close_peer(peer, SERVICE_RESTART, "server restarting")
        await self.updates.flush_all()
        rooms = list(self.rooms.values())
        await self.compactor.compact_all(rooms)
        for room in rooms:
            await self._drop(room)
        self.full_syncs.stop()
        await self.store.close()

    async def _every(self, period: float, tick: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("document hub task %s failed", tick.__name__)

    @property
    def watched(self) -> frozenset[Room]:
        """The rooms the maintenance tick walks now (the others are settled)."""
        return frozenset(self._watched)

    @property
    def connected_pairs(self) -> dict[tuple[str, uuid.UUID], int]:
        """Connected peers per (user id, workspace id): what the role check reads."""
        return dict(self._pairs)

    async def flush(self) -> bool:
        """Write every queued update now (collab/update_log.py); False on failure."""
        return await self.updates.flush()

    # ---- rooms: loading, joining, leaving, unloading ---------------------------------

    async def room(self, file_id: uuid.UUID) -> Room:
        """The loaded room (loading it once, shared by simultaneous callers)."""
        room = self.rooms.get(file_id)
        if room is not None:
            return room
        if self._stopping:
            raise RuntimeError("document hub is stopping")
        task = self._loading.get(file_id)
        if task is None:
            task = asyncio.create_task(self._load(file_id), name=f"load-{file_id}")
            self._loading[file_id] = task
            task.add_done_callback(lambda _t: self._loading.pop(file_id, None))
        return await asyncio.shield(task)

    async def _load(self, file_id: uuid.UUID) -> Room:
        metrics.LOADS.inc()
        stored = await self.store.load(file_id)
        if stored.state is None and not stored.updates and stored.content:
            stored = await self.store.initialize(file_id, build_from_text)
        room = Room(file_id)
        room.load(stored)
        # Registered before subscribing so no broker frame finds the room missing.
        self.rooms[file_id] = room
        self._watched.add(room)  # idle until its first peer joins
        metrics.ROOMS_LOADED.set(len(self.rooms))
        await self.relay.subscribe(room)
        return room

    async def join(self, file_id: uuid.UUID, peer: Peer) -> Room:
        """Load the room, register the peer, send Step1 + known awareness. Raises FileGone."""
        room = await self.room(file_id)
        room.peers.append(peer)
        room.idle_since = None
        pair = (peer.user_id, peer.workspace_id)
        self._pairs[pair] = self._pairs.get(pair, 0) + 1
        metrics.CONNECTIONS_OPEN.inc()
        peer.send(protocol.sync_step1(room.state_vector()))
        known = room.awareness.snapshot_frame()
        if known is not None:
            room.awareness.remember(known)  # the newcomer echoes it back
            peer.send(known)
        return room

    def leave(self, room: Room, peer: Peer) -> None:
        """Unregister the peer and remove its awareness states for everyone (no waiting)."""
        if peer not in room.peers:
            return
        room.peers.remove(peer)
        pair = (peer.user_id, peer.workspace_id)
        left = self._pairs.get(pair, 0) - 1
        if left > 0:
            self._pairs[pair] = left
        else:
            self._pairs.pop(pair, None)
        metrics.CONNECTIONS_OPEN.dec()
        if not room.peers:
            room.idle_since = time.monotonic()
            self._watched.add(room)
        removal = room.awareness.remove(peer.awareness_ids)
        if removal is not None:
            room.awareness.remember(removal)
            room.broadcast(removal)
            self.relay.publish_nowait(room.channel, removal)

    async def _drop(self, room: Room) -> None:
        if self.rooms.get(room.file_id) is room:
            del self.rooms[room.file_id]
        self._watched.discard(room)
        await self.relay.unsubscribe(room)
        self.compactor.forget(room)
        self.full_syncs.forget(room)
        metrics.ROOMS_LOADED.set(len(self.rooms))

    def _send_renewals(self, now: float) -> None:
        """The held awareness renewals of the rooms whose delay is over: one frame each, to
        every peer (the sender too: see collab/awareness.py) and to the other nodes."""
        due = self._renewals_due
        while due and due[0][0] <= now:
            room = due.popleft()[1]
            if self.rooms.get(room.file_id) is not room:
                continue
            frame = room.awareness.take_pending()
            if frame is None:
                continue
            room.awareness.remember(frame)
            delivered = room.broadcast(frame)
            self.stats.bytes_out += delivered * len(frame)
            self.relay.publish_nowait(room.channel, frame)

    async def _maintenance_tick(self) -> None:
        now = time.monotonic()
        if self._renewals_due:
            self._send_renewals(now)
        cfg = self.config
        compactor = self.compactor
        watched = self._watched
        started = self.updates.started
        if started:
            watched |= started
            started.clear()
        work: list[tuple[Room, bool]] = []  # (room, idle) of the rooms to compact
        for room in list(watched):
            if self.rooms.get(room.file_id) is not room:
                watched.discard(room)  # unloaded
                continue
            if room.stored.retry_at > now or self._stopping:
                continue
            idle = room.idle_since is not None and now - room.idle_since >= cfg.idle_unload_s
            due = room.log.since is not None and now - room.log.since >= cfg.compact_after_s
            if idle or due:
                work.append((room, idle))
            elif compactor.version_due(room, now):
                await compactor.auto_version(room, now)
            elif _settled(room):
                watched.discard(room)
        if any(room.log.unflushed for room, _ in work):
            # Their updates go out with the next group commit: one insert for all of them
            # instead of a round trip per compaction.
            await self.updates.after_a_flush()
        for room, idle in work:
            if self._stopping or not await compactor.try_compact(room, now):
                continue
            if compactor.version_due(room, now, idle=idle):
                await compactor.auto_version(room, now)
            if idle and not room.peers and self.rooms.get(room.file_id) is room:
                await self._drop(room)
            elif _settled(room):
                watched.discard(room)

    def _compacted_here(self, room: Room, result: Compaction) -> None:
        """Tell the other processes (collab/relay.py, compaction notices)."""
        self.relay.publish_nowait(room.channel, compaction_notice(result.merged_ids))

    def _compacted_elsewhere(self, room: Room, merged_ids: list[int]) -> None:
        room.stored.merged_elsewhere(merged_ids)
        room.log.merged_elsewhere(time.monotonic())

    # ---- client frames (the hot path) --------------------------------------------

    def receive(self, room: Room, peer: Peer, raw: bytes) -> None:
        """One frame from a client. Faults close that client only; the room is untouched.

        Synchronous (the transport calls it from its data callback): nothing here waits.
        """
        stats = self.stats
        stats.bytes_in += len(raw)
        if len(raw) > self.config.max_message_bytes:
            self._fault(room, peer, TOO_LARGE, "message too large")
            return
        if raw[:1] == _AWARENESS_BYTE and raw in room.awareness.recent:
            # The same bytes as an awareness frame this room relayed: every entry is stale
            # now (the echo every stock client sends back), so nothing to parse or relay.
            stats.awareness_in_client += 1
            return
        try:
            frame = protocol.parse_frame(raw)
            kind = frame.kind
            if kind == protocol.MSG_SYNC:
                if frame.sub == protocol.SYNC_STEP1:
                    if self.full_syncs.send(room, peer, frame.payload):
                        return  # a large document's shared full state (collab/full_sync.py)
                    peer.send(protocol.sync_step2(room.diff(frame.payload)))
                    return
                if peer.read_only:
                    if not peer.denied_sent:
                        peer.denied_sent = True
                        peer.send(protocol.permission_denied("read-only access"))
                    return
                if frame.payload == protocol.EMPTY_UPDATE:
                    return
                if room.size + len(frame.payload) > self.config.max_document_bytes:
                    self._fault(room, peer, TOO_LARGE, "document too large")
                    return
                self._sample += 1
                sampled = self._sample % metrics.BROADCAST_SAMPLE == 0
                if sampled:
                    started = time.perf_counter()
                room.apply(frame.payload)
                out = protocol.as_update_frame(frame, raw)
                delivered = room.broadcast(out, peer)
                if sampled:
                    metrics.BROADCAST_SECONDS.observe(time.perf_counter() - started)
                stats.updates_in_client += 1
                stats.updates_out += delivered
                stats.bytes_out += delivered * len(out)
                self.updates.append(room, frame.payload, peer.user_id)
                self.relay.publish_nowait(room.channel, out)
            elif kind == protocol.MSG_AWARENESS:
                entries = protocol.parse_awareness(frame.payload)
                if peer.read_only and not self.config.viewer_awareness:
                    return
                stats.awareness_in_client += 1
                awareness = room.awareness
                accepted, renewals = awareness.apply_local_split(entries, peer)
                if not accepted:
                    return  # an echo of states the room holds
                renewing = renewals == len(accepted)
                delay = self.config.awareness_renewal_delay_s
                if renewing and delay > 0:
                    if awareness.defer(accepted):
                        self._renewals_due.append((time.monotonic() + delay, room))
                    return
                awareness.supersede(accepted)
                relay = awareness_relay(raw, entries, accepted)
                if relay is None:
                    return
                awareness.remember(relay)
                # A renewal goes back to its sender too (collab/awareness.py).
                delivered = room.broadcast(relay, None if renewing else peer)
                stats.bytes_out += delivered * len(relay)
                self.relay.publish_nowait(room.channel, relay)
            elif kind == protocol.MSG_QUERY_AWARENESS:
                known = room.awareness.snapshot_frame()
                if known is not None:
                    peer.send(known)
            # MSG_AUTH from a client carries nothing for the server: ignored.
        except protocol.ProtocolError as exc:
            self._fault(room, peer, BAD_MESSAGE, str(exc))

    def _fault(self, room: Room, peer: Peer, code: int, reason: str) -> None:
        log.warning(
            "document protocol fault: conn=%s user=%s file=%s code=%d: %s",
            peer.conn_id, peer.user_id, room.file_id, code, reason,
        )
        self._close_peer(peer, code, reason)

    def _close_peer(self, peer: Peer, code: int, reason: str) -> None:
        if not peer.closed:
            metrics.CLOSES.labels(str(code)).inc()
            peer.close(code, reason)

    # ---- roles -----------------------------------------------------------------------

    async def _check_roles(self) -> None:
        if not self._pairs:
            return
        pairs = set(self._pairs)
        version = await self._roles_version() if self._roles_version is not None else None
        now = time.monotonic()
        if (
            version is not None
            and version == self._roles_seen
            and now - self._roles_checked_at < _ROLES_RECHECK_S
        ):
            return  # no membership changed since every connected role was read
        # Peers that join later had their role read on connect; a change committed after
        # the version was read moves it again, so the next tick reads the roles.
        roles = await self.roles(list(pairs))
        self._roles_seen, self._roles_checked_at = version, now
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                key = (peer.user_id, peer.workspace_id)
                if key not in pairs:
                    continue  # joined while the query ran: its role was checked on connect
                role = roles.get(key)
                if role is None:
                    self._close_peer(peer, FORBIDDEN, "access revoked")
                else:
                    peer.read_only = role == "viewer"

    # ---- the API other parts use (docs/hubs.md, collab/ports.py) ----------------------

    def live_text(self, file_id: uuid.UUID) -> str | None:
        """The text of a loaded room, without any I/O; None when the room is not loaded."""
        room = self.rooms.get(file_id)
        return room.read_text() if room is not None else None

    async def read_text(self, file_id: uuid.UUID) -> str | None:
        """Live text when loaded, else the stored document's text; None: no such file."""
        room = self.rooms.get(file_id)
        if room is not None:
            return room.read_text()
        try:
            stored = await self.store.load(file_id)
        except FileGone:
            return None
        return stored_text(stored)

    async def write_text(self, file_id: uuid.UUID, text: str, user_id: str | uuid.UUID) -> None:
        """Apply ``text`` as a diff to the CRDT, broadcast it, persist files.content."""
        room = await self.room(file_id)
        before = room.state_vector()
        with room.doc.transaction(origin="local"):
            changed = apply_text(room.text, text)
        if changed:
            update = room.doc.get_update(before)
            room.size += len(update)
            room.version += 1
            frame = protocol.sync_update(update)
            room.broadcast(frame)
            self.updates.append(room, update, str(user_id))
            await self.relay.publish(room.channel, frame)
        await self.compactor.compact(room)

    async def save_version(
        self, file_id: uuid.UUID, user_id: str | uuid.UUID, change_message: str | None
    ) -> dict[str, Any]:
        """Persist the live text now and write a file_versions row for it."""
        room = self.rooms.get(file_id)
        if room is not None:
            await self.compactor.compact(room)
        text = await self.read_text(file_id)
        if text is None:
            raise FileGone(str(file_id))
        row = await self.store.save_version(file_id, text, str(user_id), change_message)
        if row is None:
            raise FileGone(str(file_id))
        return row

    async def close_file(self, file_id: uuid.UUID, code: int, reason: str) -> None:
        """Close every socket on the file (deleted, access revoked); the room unloads."""
        room = self.rooms.get(file_id)
        if room is None:
            return
        for peer in list(room.peers):
            self._close_peer(peer, code, reason)
        room.idle_since = time.monotonic() - self.config.idle_unload_s
        self._watched.add(room)


def _settled(room: Room) -> bool:
    """Nothing for the maintenance tick until an update, or its last peer leaving, wakes it."""
    return (
        room.idle_since is None
        and room.log.since is None
        and room.log.seq == room.stored.versioned_seq
    )
