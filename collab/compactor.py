"""The compactor: merges a room's log into its stored state, and writes automatic versions.

Compaction (after ``compact_after_s`` of log age, on unload and on shutdown) merges the
state and the log rows, plus whatever this node's memory holds that the store lacks,
verifies the merged state decodes to the same text, and writes state + files.content +
files.size_bytes. Alone on a file, a node merges what it holds in memory (the state it
loaded or wrote and the rows it appended) without reading them back; otherwise the store
reads them under its lock.

Automatic ``file_versions`` rows: at most one per ``version_bucket_s`` per file, only when
the text changed, ``changed_by`` = the last editor.

Each room's ``StoredState`` is changed only by code in this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collab import metrics
from collab.config import CollabConfig
from collab.merge import merge_document
from collab.store import (
    Compaction,
    DocumentStore,
    FileGone,
    LiveCompaction,
    Merged,
    StoredDocument,
)
from collab.update_log import UpdateLog

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
# Merges of at most this many bytes of pieces run on the event loop (well under a
# millisecond); larger ones in a worker thread, where the hop costs less than the stall.
INLINE_MERGE_BYTES = 64 * 1024
# Rooms per statement of the shutdown's batched compaction: one transaction holds their file
# locks, so a batch stays short (tens of ms) for another process waiting on one of them.
SHUTDOWN_BATCH = 100
# Final compactions through the store running at once (each holds a pooled connection).
SHUTDOWN_PARALLEL = 4


@dataclass
class StoredState:
    """What the store holds of one room as far as this node knows: the state it loaded or
    last wrote (and that state's generation), and the log rows it loaded or appended since,
    (id, update) in id order. Compaction merges these instead of reading them back."""

    state: bytes | None = None
    generation: int | None = None
    # Nothing was stored when the room loaded and nothing this node knows of since: the
    # first compaction from memory inserts the state (generation None to compact_live).
    empty: bool = False
    own_rows: list[tuple[int, bytes]] = field(default_factory=list)
    # Failed compactions in a row, and when to try again.
    failures: int = 0
    retry_at: float = 0.0
    # The room's log sequence number at its last automatic version, and when it was checked.
    versioned_seq: int = 0
    version_checked_at: float = field(default_factory=time.monotonic)

    def loaded(self, stored: StoredDocument) -> None:
        self.state = stored.state
        self.generation = stored.generation if stored.state is not None else None
        self.empty = stored.state is None
        if len(stored.update_ids) == len(stored.updates):
            self.own_rows = list(zip(stored.update_ids, stored.updates, strict=True))
        else:  # a store that does not say which rows it read: compaction reads them back
            self.generation = None
            self.empty = False

    def row_written(self, row_id: int, update: bytes) -> None:
        """The update log wrote one of this room's updates as row ``row_id``."""
        self.own_rows.append((row_id, update))

    def merged(self, result: Compaction, gone: Sequence[int] = ()) -> None:
        """``result`` is written; ``gone``: rows known before it that it did not merge
        because another process's compaction had already deleted them."""
        self.state, self.generation = result.state, result.generation
        self.empty = False
        self.merged_elsewhere([*result.merged_ids, *gone])

    def merged_elsewhere(self, merged_ids: Sequence[int]) -> None:
        """These rows are merged (and deleted) by a compaction, here or in another process:
        they leave the rows this process would merge. Its state is then not the stored one
        any more (its next compaction reads the store), but it keeps no rows that are gone."""
        self.empty = False  # another process wrote a state (if it was not this one)
        if self.own_rows:
            merged = set(merged_ids)
            self.own_rows = [row for row in self.own_rows if row[0] not in merged]


class UpdatesNotLogged(Exception):
    """A compaction waits for the room's queued updates, whose write just failed."""


class Compactor:
    def __init__(
        self,
        store: DocumentStore,
        config: CollabConfig,
        updates: UpdateLog,
        on_written: Callable[[Room, Compaction], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.updates = updates
        # Told of every compaction written (the hub tells the other processes).
        self.on_written = on_written
        self._locks: dict[object, asyncio.Lock] = {}

    def forget(self, room: Room) -> None:
        self._locks.pop(room.file_id, None)

    def version_due(self, room: Room, now: float, *, idle: bool = False) -> bool:
        """The text changed since the last automatic version and its bucket has passed."""
        stored = room.stored
        return room.log.seq != stored.versioned_seq and (
            idle or now - stored.version_checked_at >= self.config.version_bucket_s
        )

    async def compact(self, room: Room) -> None:
        lock = self._locks.setdefault(room.file_id, asyncio.Lock())
        async with lock:
            # It merges what the log holds: the room's own updates are logged first (the
            # maintenance tick has usually waited for the group commit that did it).
            if room.log.unflushed and not await self.updates.flush():
                # A merge from memory holds only what the log holds, and the room may be
                # unloaded after it: with the log's write failing, try again later.
                raise UpdatesNotLogged(f"the updates of {room.file_id} are not logged yet")
            seq = room.log.seq
            started = time.perf_counter()
            live_text = room.read_text()
            result = await self._compact_from_memory(room, live_text)
            gone: list[int] = []
            if result is not None:
                metrics.COMPACTIONS.labels("memory").inc()
            else:
                # Rows listed now were committed before the store reads the log under its
                # lock: any of them it does not merge was merged and deleted by another
                # process (whose notice may have been lost).
                gone = [row_id for row_id, _ in room.stored.own_rows]
                live, live_text = room.doc.get_update(), room.read_text()
                result = await self.store.compact(
                    room.file_id,
                    lambda state, updates: merge_document(state, updates, live, live_text),
                    editor=room.log.last_editor,
                )
                metrics.COMPACTIONS.labels("store").inc()
            metrics.COMPACTION_SECONDS.observe(time.perf_counter() - started)
            if result is None:
                return
            self._written(room, seq, result, gone)

    async def _compact_from_memory(self, room: Room, live_text: str) -> Compaction | None:
        """Merge the state and log rows this process holds, without reading them back.

        The same merge (and check) as a compaction from the store, of the same pieces: the
        store writes it only if its state is still the one merged and it has no log rows
        but this process's. None when it is not (another process wrote), or nothing is known.
        """
        live = await self._merge_from_memory(room, live_text)
        if live is None:
            return None
        return await self.store.compact_live(
            live.file_id, live.snapshot, generation=live.generation, own_ids=live.own_ids,
            delete_ids=live.delete_ids, editor=live.editor,
        )

    async def _merge_from_memory(self, room: Room, live_text: str) -> LiveCompaction | None:
        state, generation = room.stored.state, room.stored.generation
        if (state is None or generation is None) and not room.stored.empty:
            return None  # what is stored is not known here: merge what the store holds
        rows = list(room.stored.own_rows)
        updates = [update for _, update in rows]

        def merge() -> Merged:
            # Exactly the stored pieces: the live document would only add what is still to
            # be logged (or arrived from other processes), and a third of the merge's work.
            # Its text is the check: equal unless an update arrived since the flush.
            return merge_document(state, updates, None, live_text)

        if len(state or b"") + sum(map(len, updates)) <= INLINE_MERGE_BYTES:
            merged = merge()
        else:
            merged = await asyncio.to_thread(merge)
        return LiveCompaction(
            room.file_id, merged, generation, own_ids=[row_id for row_id, _ in rows],
            delete_ids=[row_id for row_id, _ in rows], editor=room.log.last_editor,
        )

    async def compact_all(self, rooms: Sequence[Room]) -> None:
        """The final compaction of every room (shutdown, after the update log's last flush).

        Rooms merged from memory are written ``SHUTDOWN_BATCH`` at a time, one statement
        each, instead of a round trip per room (500 rooms took 5-11 s one by one on a loaded
        machine). A room the batch did not write (another process wrote its state), and
        every room of a batch that failed, is compacted on its own as before; a room whose
        own compaction fails keeps its log rows (the next load merges them) and the others
        are still written.
        """
        batch: list[tuple[Room, int, LiveCompaction]] = []
        alone: list[Room] = []
        for room in sorted(rooms, key=lambda room: room.file_id):
            live = None
            if not room.log.unflushed:
                try:
                    live = await self._merge_from_memory(room, room.read_text())
                except Exception:
                    log.exception("final merge of %s failed", room.file_id)
            if live is None:
                alone.append(room)
            else:
                batch.append((room, room.log.seq, live))
        for start in range(0, len(batch), SHUTDOWN_BATCH):
            chunk = batch[start:start + SHUTDOWN_BATCH]
            started = time.perf_counter()
            try:
                results = await self.store.compact_live_many([live for _, _, live in chunk])
            except Exception:
                log.exception("batched final compaction of %d rooms failed; one by one",
                              len(chunk))
                alone.extend(room for room, _, _ in chunk)
                continue
            metrics.COMPACTION_SECONDS.observe(time.perf_counter() - started)
            for (room, seq, _), result in zip(chunk, results, strict=True):
                if result is None:
                    alone.append(room)
                    continue
                metrics.COMPACTIONS.labels("memory").inc()
                self._written(room, seq, result)
        # The others (another process wrote, or nothing stored yet: a file first edited
        # since its load) read and write through the store, a few at once (the pool has
        # 10 connections): each is a transaction of two round trips and a merge.
        slots = asyncio.Semaphore(SHUTDOWN_PARALLEL)

        async def alone_compact(room: Room) -> None:
            async with slots:
                try:
                    await self.compact(room)
                except Exception:
                    log.exception("final compaction of %s failed (log rows are kept)",
                                  room.file_id)

        await asyncio.gather(*(alone_compact(room) for room in alone))

    def _written(
        self, room: Room, seq: int, result: Compaction, gone: Sequence[int] = ()
    ) -> None:
        metrics.COMPACTION_BYTES.observe(result.state_bytes)
        room.size = result.state_bytes
        room.stored.merged(result, gone)
        room.log.compacted(seq)
        if self.on_written is not None:
            self.on_written(room, result)

    async def try_compact(self, room: Room, now: float) -> bool:
        """Compact; on failure keep the room and retry later with capped backoff."""
        stored = room.stored
        try:
            await self.compact(room)
        except Exception as exc:
            stored.failures += 1
            stored.retry_at = now + min(MAX_BACKOFF_S, 0.2 * 2**stored.failures)
            metrics.COMPACTION_FAILURES.inc()
            log.warning("compaction of %s failed (attempt %d, room kept): %s",
                        room.file_id, stored.failures, exc)
            return False
        stored.failures = 0
        return True

    async def auto_version(self, room: Room, now: float) -> None:
        stored = room.stored
        stored.version_checked_at = now
        seq = room.log.seq
        if seq == stored.versioned_seq:
            return
        stored.versioned_seq = seq
        try:
            await self.store.save_version(
                room.file_id, room.read_text(), room.log.last_editor, None,
                auto_bucket_s=self.config.version_bucket_s,
            )
        except FileGone:
            return
