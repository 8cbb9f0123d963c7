"""Editor sessions of the project channel: open files, active file, layout per (user, project).

Kept in memory as the user changes them and saved through the store at most once per
``save_debounce_s`` (``run``, the project hub's flusher task), immediately when the user's
last socket on the project closes, and on shutdown. A failed save is kept and retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collab import project_metrics as metrics
from collab.project_protocol import EditorState, ProtocolError, parse_editor_state

log = logging.getLogger(__name__)


class EditorSessionStore(Protocol):
    """Storage of the project channel: editor states, and who may still be connected."""

    async def load(self, user_id: uuid.UUID, project_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def save(
        self, user_id: uuid.UUID, project_id: uuid.UUID, state: dict[str, Any]
    ) -> None: ...

    async def project_roles(
        self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[uuid.UUID, uuid.UUID], str | None]: ...


@dataclass
class PendingSave:
    state: EditorState
    changed_at: float
    user_id: uuid.UUID
    project_id: uuid.UUID


class SaveCounts(Protocol):
    saves: int
    save_failures: int


class EditorSessions:
    def __init__(self, store: EditorSessionStore, debounce_s: float, stats: SaveCounts) -> None:
        self.store = store
        self.debounce_s = debounce_s
        self.stats = stats
        self.pending: dict[tuple[uuid.UUID, uuid.UUID], PendingSave] = {}

    def changed(self, user_id: uuid.UUID, project_id: uuid.UUID, state: EditorState) -> None:
        """The user's newest editor state: saved once it has not changed for a while."""
        self.pending[(user_id, project_id)] = PendingSave(
            state, time.monotonic(), user_id, project_id
        )

    async def restore(self, user_id: uuid.UUID, project_id: uuid.UUID) -> EditorState | None:
        pending = self.pending.get((user_id, project_id))
        if pending is not None:
            return pending.state
        try:
            row = await self.store.load(user_id, project_id)
        except Exception:
            log.exception("editor state of user %s project %s not loaded", user_id, project_id)
            return None
        if row is None:
            return None
        try:
            return parse_editor_state(row)
        except ProtocolError:
            return None

    async def save_now(self, key: tuple[uuid.UUID, uuid.UUID]) -> None:
        pending = self.pending.pop(key, None)
        if pending is None:
            return
        try:
            await self.store.save(pending.user_id, pending.project_id, pending.state.to_json())
            self.stats.saves += 1
            metrics.SAVES.labels("ok").inc()
        except Exception:
            self.stats.save_failures += 1
            metrics.SAVES.labels("failed").inc()
            log.exception("editor state of user %s not saved; retrying", pending.user_id)
            self.pending.setdefault(key, pending)

    async def flush(self, *, force: bool) -> None:
        now = time.monotonic()
        due = [
            key
            for key, p in self.pending.items()
            if force or now - p.changed_at >= self.debounce_s
        ]
        for key in due:
            await self.save_now(key)

    async def run(self) -> None:
        interval = max(0.05, self.debounce_s / 4)
        while True:
            await asyncio.sleep(interval)
            await self.flush(force=False)
