"""``DocumentHub``: the room manager. Loads, serves, persists and unloads documents.

Lifecycle of a room
  - The first ``join`` starts one load (a shared task; every simultaneous joiner awaits
    the same one, nothing is held across a client's setup). Nothing is sent to a client
    before the load finished; a failed load closes the joiners with 1011 and stores nothing.
  - A file that has ``files.content`` but no CRDT yet gets its first state built from the
    text exactly once, under the store's per-file lock (re-checked after taking it).
  - When the last peer left ``idle_unload_s`` ago, the room is flushed, compacted and
    unloaded; a failed compaction keeps it loaded and retries with backoff.

Persistence
  - Updates received from this node's clients are queued for the update log; one task
    writes them in one batched insert every ``log_flush_ms`` (group commit). Updates that
    arrived from the broker are applied and relayed but never logged or re-published.
  - Compaction (after ``compact_after_s`` of log age, on unload and on shutdown) merges the
    state and the log rows read from the store under its lock, plus whatever this node's
    memory holds that the store lacks, verifies the merged state decodes to the same text,
    and writes state + files.content + files.size_bytes.
  - Automatic file_versions rows: at most one per ``version_bucket_s`` per file, only when
    the text changed, ``changed_by`` = the last editor.

Gap repair between nodes (the bound)
  Every loaded room publishes its Step1 (state vector) on ``doc:{file_id}`` after loading,
  after each broker (re)subscribe and every ``gap_repair_s``. A node receiving a Step1
  answers with a Step2 of what the asker lacks (only if non-empty) and, if the asker has
  seen something it has not, publishes its own Step1 at once. So an update dropped between
  live nodes reaches every node within ``gap_repair_s`` plus two broker round trips
  (5 s by default), provided the broker delivers the repair messages themselves.

Roles: every ``role_check_s`` the hub re-reads the roles of all connected (user, workspace)
pairs in one query; a peer no longer a member is closed with 4403, a demoted one becomes
read-only. This works across processes without any coupling to the REST code. When the
store tracks a version of the memberships (sql/0064), the hub reads that one number instead
and the roles only when it moved, or every ``_ROLES_RECHECK_S`` regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from broker.interface import Broker
from collab import metrics, protocol
from collab.config import CollabConfig
from collab.room import Peer, Room, apply_all, build_from_text, merge_tree, new_doc
from collab.store import Compaction, DocumentStore, FileGone, Merged, StoredDocument
from collab.text_diff import apply_text
from sockets.close_codes import BAD_MESSAGE, FORBIDDEN, SERVICE_RESTART, TOO_LARGE

log = logging.getLogger(__name__)


_CHANNEL_PREFIX = "doc:"
_MAX_BACKOFF_S = 30.0
# Merges of at most this many bytes of pieces run on the event loop (well under a
# millisecond); larger ones in a worker thread, where the hop costs less than the stall.
_INLINE_MERGE_BYTES = 64 * 1024
# Roles are re-read at least this often even when the membership version did not move.
_ROLES_RECHECK_S = 30.0

RoleSource = Callable[
    [Sequence[tuple[str, uuid.UUID]]], Awaitable[dict[tuple[str, uuid.UUID], str | None]]
]


class MergeMismatch(Exception):
    """The merged state does not decode to the text of its pieces: nothing is written."""


def merge_document(
    state: bytes | None, updates: list[bytes], live: bytes | None, live_text: str | None = None
) -> Merged:
    """State + log rows (+ ``live``, a process's in-memory document) -> one verified state.

    Pure bytes in and out, so stores may run it in a worker thread: pycrdt's calls hold
    the GIL, but the event loop then stalls for one call at most, not the whole merge.
    """
    # The stored state is the merge of the pieces themselves, not a Doc's re-encoding: a Doc
    # leaves out structs still waiting for a missing predecessor (a log row drawn earlier
    # but committed later than the rows read), and deleting their rows would lose them.
    pieces = [p for p in (state, *updates, live) if p]
    if not pieces:
        pieces = [new_doc()[0].get_update()]
    merged = merge_tree(pieces)
    doc, text = new_doc()
    doc.apply_update(merged)
    merged_text = str(text)
    # The check: the state alone decodes to the text the editors see (``live_text``, the
    # usual case: this process holds everything the store does), or else to the text of
    # the pieces merged another way (reverse order; one apply, nothing waits on a later piece).
    if merged_text != live_text:
        check, check_text = new_doc()
        apply_all(check, pieces[::-1])
        if merged_text != str(check_text):
            raise MergeMismatch("merged state decodes to a different text than its pieces")
    return Merged(merged, doc.get_state(), merged_text)


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
        self._loading: dict[uuid.UUID, asyncio.Task[Room]] = {}
        # Updates still to be logged, with their room (which knows the file and keeps the
        # row ids for its compaction), and when the oldest of them was queued.
        self._pending: list[tuple[Room, bytes]] = []
        self._pending_since: float | None = None
        # Resolved when the group commit under way (or the next one) ends: compactions wait
        # for it rather than pay a round trip of their own.
        self._flushed: asyncio.Future[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._compact_locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._flush_failures = 0
        self._flush_retry_at = 0.0
        self.stats = metrics.HubStats()
        self._sample = 0

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.broker.on_resubscribe(self._on_resubscribe)
        loops: list[tuple[str, Callable[[], Awaitable[None]], float]] = [
            ("log-writer", self._flush_tick, self.config.log_flush_ms / 1000),
            ("maintenance", self._maintenance_tick, 0.1),
            ("roles", self._check_roles, self.config.role_check_s),
            ("gap-repair", self._gap_repair, self.config.gap_repair_s),
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
        await self._flush_all()
        for room in list(self.rooms.values()):
            try:
                await self._compact(room)
            except Exception:
                log.exception("final compaction of %s failed (log rows are kept)", room.file_id)
            await self._drop(room)
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

    # ---- rooms -------------------------------------------------------------------

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
        stored = await self.store.load(file_id)
        if stored.state is None and not stored.updates and stored.content:
            stored = await self.store.initialize(file_id, build_from_text)
        room = Room(file_id)
        room.load(stored)
        # Registered before subscribing so no broker frame finds the room missing.
        self.rooms[file_id] = room
        await self.broker.subscribe(room.channel, self._on_broker)
        metrics.ROOMS_LOADED.set(len(self.rooms))
        # Ask other nodes for whatever they hold beyond the store (their flush window).
        await self._publish(room.channel, protocol.sync_step1(room.state_vector()))
        return room

    async def join(self, file_id: uuid.UUID, peer: Peer) -> Room:
        """Load the room, register the peer, send Step1 + known awareness. Raises FileGone."""
        room = await self.room(file_id)
        room.peers.append(peer)
        room.idle_since = None
        metrics.CONNECTIONS_OPEN.inc()
        peer.send(protocol.sync_step1(room.state_vector()))
        known = room.awareness.snapshot_frame()
        if known is not None:
            peer.send(known)
        return room

    def leave(self, room: Room, peer: Peer) -> None:
        """Unregister the peer and remove its awareness states for everyone (no waiting)."""
        if peer not in room.peers:
            return
        room.peers.remove(peer)
        metrics.CONNECTIONS_OPEN.dec()
        if not room.peers:
            room.idle_since = time.monotonic()
        removal = room.awareness.remove(peer.awareness_ids)
        if removal is not None:
            room.broadcast(removal)
            self._publish_nowait(room.channel, removal)

    async def _drop(self, room: Room) -> None:
        if self.rooms.get(room.file_id) is room:
            del self.rooms[room.file_id]
        with contextlib.suppress(Exception):
            await self.broker.unsubscribe(room.channel, self._on_broker)
        self._compact_locks.pop(room.file_id, None)
        metrics.ROOMS_LOADED.set(len(self.rooms))

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
        try:
            frame = protocol.parse_frame(raw)
            kind = frame.kind
            if kind == protocol.MSG_SYNC:
                if frame.sub == protocol.SYNC_STEP1:
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
                self._log_update(room, frame.payload, peer.user_id)
                self._publish_nowait(room.channel, out)
            elif kind == protocol.MSG_AWARENESS:
                entries = protocol.parse_awareness(frame.payload)
                if peer.read_only and not self.config.viewer_awareness:
                    return
                stats.awareness_in_client += 1
                accepted = room.awareness.apply_local(entries, peer)
                relay = _awareness_relay(raw, entries, accepted)
                if relay is None:
                    return  # an echo of states the room holds
                delivered = room.broadcast(relay, peer)
                stats.bytes_out += delivered * len(relay)
                self._publish_nowait(room.channel, relay)
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

    def _log_update(self, room: Room, update: bytes, user_id: str | None) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append((room, update))
        room.unflushed += 1
        if room.log_since is None:
            room.log_since = time.monotonic()
        room.log_seq += 1
        if user_id is not None:
            room.last_editor = user_id
        room.changed_since_version = True

    def _publish_nowait(self, channel: str, frame: bytes) -> None:
        try:
            self.broker.publish_nowait(channel, frame)
        except Exception as exc:  # a broken broker must not break local editing
            log.warning("publish on %s failed: %s", channel, exc)

    async def _publish(self, channel: str, frame: bytes) -> None:
        try:
            await self.broker.publish(channel, frame)
        except Exception as exc:  # a broken broker must not break local editing
            log.warning("publish on %s failed: %s", channel, exc)

    # ---- broker frames -------------------------------------------------------------

    async def _on_broker(self, channel: str, payload: bytes) -> None:
        file_id = uuid.UUID(channel[len(_CHANNEL_PREFIX):])
        room = self.rooms.get(file_id)
        if room is None:
            return
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
                self.stats.updates_in_broker += 1
                self.stats.updates_out += delivered
                self.stats.bytes_out += delivered * len(out)
            elif frame.kind == protocol.MSG_AWARENESS:
                self.stats.awareness_in_broker += 1
                entries = protocol.parse_awareness(frame.payload)
                relay = _awareness_relay(payload, entries, room.awareness.apply_remote(entries))
                if relay is None:
                    return
                delivered = room.broadcast(relay)
                self.stats.bytes_out += delivered * len(relay)
        except protocol.ProtocolError as exc:
            log.warning("bad frame from the broker on %s: %s", channel, exc)

    async def _answer_step1(self, room: Room, state_vector: bytes) -> None:
        missing = room.diff(state_vector)
        if missing != protocol.EMPTY_UPDATE:
            metrics.GAP_REPAIRS.inc()
            await self._publish(room.channel, protocol.sync_step2(missing))
        ours = protocol.decode_state_vector(room.state_vector())
        if protocol.lacks(ours, protocol.decode_state_vector(state_vector)):
            await self._publish(room.channel, protocol.sync_step1(room.state_vector()))

    async def _on_resubscribe(self) -> None:
        await self._gap_repair()

    async def _gap_repair(self) -> None:
        for room in list(self.rooms.values()):
            await self._publish(room.channel, protocol.sync_step1(room.state_vector()))

    # ---- group commit ----------------------------------------------------------------

    async def _flush_tick(self) -> None:
        if self._pending and time.monotonic() >= self._flush_retry_at:
            await self.flush()
        oldest = self._pending_since if self._pending else None
        metrics.LOG_LAG_SECONDS.set(time.monotonic() - oldest if oldest is not None else 0.0)

    async def flush(self) -> bool:
        """Write every queued update in one insert; False (and requeued) on failure."""
        try:
            return await self._flush()
        finally:
            waiter, self._flushed = self._flushed, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _after_a_flush(self) -> None:
        """Wait for the end of the group commit under way or the next (two windows at most)."""
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self._flushed), 2 * self.config.log_flush_ms / 1000
            )

    async def _flush(self) -> bool:
        async with self._flush_lock:
            if not self._pending:
                return True
            batch, since = self._pending, self._pending_since
            self._pending = []
            try:
                row_ids = await self.store.append_updates(
                    [(room.file_id, update) for room, update in batch]
                )
            except asyncio.CancelledError:
                # Stopping: the insert may or may not have committed. Keep the batch for the
                # final flush (a row written twice is harmless: updates are idempotent).
                self._requeue(batch, since)
                raise
            except Exception as exc:
                self._requeue(batch, since)
                self._flush_failures += 1
                backoff = min(_MAX_BACKOFF_S, 0.05 * 2**self._flush_failures)
                self._flush_retry_at = time.monotonic() + backoff
                metrics.LOG_FLUSH_FAILURES.inc()
                log.warning("update log write failed (%d rows kept, retry in %.2fs): %s",
                            len(batch), backoff, exc)
                return False
            self._flush_failures = 0
            metrics.LOG_ROWS.inc(len(batch))
            # Each room notes its new rows: its compaction merges them from memory.
            for (room, update), row_id in zip(batch, row_ids, strict=True):
                room.unflushed -= 1
                if row_id is not None:
                    room.own_rows.append((row_id, update))
            return True

    def _requeue(self, batch: list[tuple[Room, bytes]], since: float | None) -> None:
        """Put a batch that was not written back in front of what queued meanwhile (its
        oldest update is then the oldest of all)."""
        self._pending[:0] = batch
        self._pending_since = since

    async def _flush_all(self) -> None:
        for _ in range(3):
            if await self.flush():
                return
            await asyncio.sleep(0.1)
        if self._pending:
            log.error("shutdown: %d update(s) could not be logged", len(self._pending))

    # ---- compaction, versions, unloading ----------------------------------------------

    async def _compact(self, room: Room) -> None:
        lock = self._compact_locks.setdefault(room.file_id, asyncio.Lock())
        async with lock:
            # It merges what the log holds: the room's own updates are logged first (the
            # maintenance tick has usually waited for the group commit that did it).
            if room.unflushed:
                await self.flush()
            seq = room.log_seq
            started = time.perf_counter()
            live_text = room.read_text()
            result = await self._compact_from_memory(room, live_text)
            if result is not None:
                metrics.COMPACTIONS.labels("memory").inc()
            else:
                live, live_text = room.doc.get_update(), room.read_text()
                result = await self.store.compact(
                    room.file_id,
                    lambda state, updates: merge_document(state, updates, live, live_text),
                    editor=room.last_editor,
                )
                metrics.COMPACTIONS.labels("store").inc()
            metrics.COMPACTION_SECONDS.observe(time.perf_counter() - started)
            if result is None:
                return
            metrics.COMPACTION_BYTES.observe(result.state_bytes)
            room.size = result.state_bytes
            room.stored_state, room.stored_generation = result.state, result.generation
            merged = set(result.merged_ids)
            room.own_rows = [row for row in room.own_rows if row[0] not in merged]
            if room.log_seq == seq:
                room.log_since = None
                room.dirty = False

    async def _compact_from_memory(self, room: Room, live_text: str) -> Compaction | None:
        """Merge the state and log rows this process holds, without reading them back.

        The same merge (and check) as a compaction from the store, of the same pieces: the
        store writes it only if its state is still the one merged and it has no log rows
        but this process's. None when it is not (another process wrote), or nothing is known.
        """
        state, generation = room.stored_state, room.stored_generation
        if state is None or generation is None:
            return None
        rows = list(room.own_rows)
        updates = [update for _, update in rows]

        def merge() -> Merged:
            # Exactly the stored pieces: the live document would only add what is still to
            # be logged (or arrived from other processes), and a third of the merge's work.
            # Its text is the check: equal unless an update arrived since the flush.
            return merge_document(state, updates, None, live_text)

        if len(state) + sum(map(len, updates)) <= _INLINE_MERGE_BYTES:
            merged = merge()
        else:
            merged = await asyncio.to_thread(merge)
        return await self.store.compact_live(
            room.file_id, merged, generation=generation,
            own_ids=[row_id for row_id, _ in room.own_rows],
            delete_ids=[row_id for row_id, _ in rows], editor=room.last_editor,
        )

    async def _try_compact(self, room: Room, now: float) -> bool:
        try:
            await self._compact(room)
        except Exception as exc:
            room.failures += 1
            room.retry_at = now + min(_MAX_BACKOFF_S, 0.2 * 2**room.failures)
            metrics.COMPACTION_FAILURES.inc()
            log.warning("compaction of %s failed (attempt %d, room kept): %s",
                        room.file_id, room.failures, exc)
            return False
        room.failures = 0
        return True

    async def _auto_version(self, room: Room, now: float) -> None:
        room.version_checked_at = now
        if not room.changed_since_version:
            return
        room.changed_since_version = False
        try:
            await self.store.save_version(
                room.file_id, room.read_text(), room.last_editor, None,
                auto_bucket_s=self.config.version_bucket_s,
            )
        except FileGone:
            return

    async def _maintenance_tick(self) -> None:
        now = time.monotonic()
        cfg = self.config
        work: list[tuple[Room, bool]] = []  # (room, idle) of the rooms to compact
        for room in list(self.rooms.values()):
            if room.retry_at > now or self._stopping:
                continue
            idle = room.idle_since is not None and now - room.idle_since >= cfg.idle_unload_s
            due = room.log_since is not None and now - room.log_since >= cfg.compact_after_s
            if idle or due:
                work.append((room, idle))
            elif room.changed_since_version and (
                now - room.version_checked_at >= cfg.version_bucket_s
            ):
                await self._auto_version(room, now)
        if any(room.unflushed for room, _ in work):
            # Their updates go out with the next group commit: one insert for all of them
            # instead of a round trip per compaction.
            await self._after_a_flush()
        for room, idle in work:
            if self._stopping or not await self._try_compact(room, now):
                continue
            if room.changed_since_version and (
                idle or now - room.version_checked_at >= cfg.version_bucket_s
            ):
                await self._auto_version(room, now)
            if idle and not room.peers and self.rooms.get(room.file_id) is room:
                await self._drop(room)

    # ---- roles -----------------------------------------------------------------------

    async def _check_roles(self) -> None:
        pairs = {
            (peer.user_id, peer.workspace_id)
            for room in self.rooms.values()
            for peer in room.peers
        }
        if not pairs:
            return
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

    # ---- the API other parts use (docs/hubs.md) --------------------------------------

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
        return _stored_text(stored)

    async def write_text(self, file_id: uuid.UUID, text: str, user_id: str | uuid.UUID) -> None:
        """Apply ``text`` as a diff to the CRDT, broadcast it, persist files.content."""
        room = await self.room(file_id)
        before = room.state_vector()
        with room.doc.transaction(origin="local"):
            changed = apply_text(room.text, text)
        if changed:
            update = room.doc.get_update(before)
            room.size += len(update)
            room.dirty = True
            frame = protocol.sync_update(update)
            room.broadcast(frame)
            self._log_update(room, update, str(user_id))
            await self._publish(room.channel, frame)
        await self._compact(room)

    async def save_version(
        self, file_id: uuid.UUID, user_id: str | uuid.UUID, change_message: str | None
    ) -> dict[str, Any]:
        """Persist the live text now and write a file_versions row for it."""
        room = self.rooms.get(file_id)
        if room is not None:
            await self._compact(room)
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


def _awareness_relay(
    raw: bytes, entries: list[protocol.AwarenessEntry], accepted: list[protocol.AwarenessEntry]
) -> bytes | None:
    """What to pass on of an awareness frame: all of it, its new entries only, or nothing."""
    if not accepted:
        return None
    if len(accepted) == len(entries):
        return raw
    return protocol.awareness_frame(protocol.encode_awareness(accepted))


def _stored_text(stored: StoredDocument) -> str:
    if stored.state is None and not stored.updates:
        return stored.content or ""
    doc, text = new_doc()
    apply_all(doc, [stored.state or b"", *stored.updates])
    return str(text)
