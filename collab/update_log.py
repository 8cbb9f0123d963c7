"""The update-log writer: group commit of the updates this node's clients sent.

Updates received from this node's clients are queued here; one task writes them in one
batched insert every ``log_flush_ms`` (what a killed process can lose at most). Updates that
arrived from the broker are applied and relayed but never logged. A failed write keeps the
batch, in front of what queued meanwhile, and retries with capped backoff.

Each room's ``LogState`` is changed only by code in this module: what it has queued, since
when, and who edited last. Rows written are handed to the room's ``StoredState``
(collab/compactor.py), which merges them from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab import metrics
from collab.store import DocumentStore

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class LogState:
    """One room's updates on their way to the log (changed by ``UpdateLog`` only)."""

    since: float | None = None  # first update logged here since the last compaction
    seq: int = 0  # updates logged so far: compactions and versions compare it
    unflushed: int = 0  # of its updates, how many are queued or being written
    last_editor: str | None = None  # the user of the last logged update (files.updated_by)

    def compacted(self, seq: int) -> None:
        """The log up to update ``seq`` is merged into the state: its age starts over,
        unless more came while the compaction ran."""
        if self.seq == seq:
            self.since = None

    def merged_elsewhere(self, now: float) -> None:
        """Another process just compacted this file (merging what this one logged so far):
        this one's compaction waits another ``compact_after_s``, so that of the processes
        editing a file one compacts per period, not each of them."""
        if self.since is not None:
            self.since = now


class UpdateLog:
    def __init__(self, store: DocumentStore, flush_ms: int) -> None:
        self.store = store
        self.flush_ms = flush_ms
        # Updates still to be logged, with their room (which knows the file and keeps the
        # row ids for its compaction), and when the oldest of them was queued.
        self._pending: list[tuple[Room, bytes]] = []
        self._pending_since: float | None = None
        # Rooms whose log got its first update since their last compaction: the hub's
        # maintenance tick takes them into the rooms it watches (it walks no others).
        self.started: set[Room] = set()
        # Resolved when the group commit under way (or the next one) ends: compactions wait
        # for it rather than pay a round trip of their own.
        self._flushed: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def append(self, room: Room, update: bytes, user_id: str | None) -> None:
        """Queue one update of this node's clients (synchronous: the hot path)."""
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append((room, update))
        state = room.log
        state.unflushed += 1
        if state.since is None:
            state.since = time.monotonic()
            self.started.add(room)
        state.seq += 1
        if user_id is not None:
            state.last_editor = user_id

    async def tick(self) -> None:
        if self._pending and time.monotonic() >= self._retry_at:
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

    async def after_a_flush(self) -> None:
        """Wait for the end of the group commit under way or the next (two windows at most)."""
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._flushed), 2 * self.flush_ms / 1000)

    async def _flush(self) -> bool:
        async with self._lock:
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
                self._failures += 1
                backoff = min(MAX_BACKOFF_S, 0.05 * 2**self._failures)
                self._retry_at = time.monotonic() + backoff
                metrics.LOG_FLUSH_FAILURES.inc()
                log.warning("update log write failed (%d rows kept, retry in %.2fs): %s",
                            len(batch), backoff, exc)
                return False
            self._failures = 0
            metrics.LOG_ROWS.inc(len(batch))
            # Each room notes its new rows: its compaction merges them from memory.
            for (room, update), row_id in zip(batch, row_ids, strict=True):
                room.log.unflushed -= 1
                if row_id is not None:
                    room.stored.row_written(row_id, update)
            return True

    def _requeue(self, batch: list[tuple[Room, bytes]], since: float | None) -> None:
        """Put a batch that was not written back in front of what queued meanwhile (its
        oldest update is then the oldest of all)."""
        self._pending[:0] = batch
        self._pending_since = since

    async def flush_all(self) -> None:
        """Shutdown: a few tries, then say what could not be logged."""
        for _ in range(3):
            if await self.flush():
                return
            await asyncio.sleep(0.1)
        if self._pending:
            log.error("shutdown: %d update(s) could not be logged", len(self._pending))
