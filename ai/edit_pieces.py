"""How an edit's text is cut into document updates: batched while it arrives fast, and a
stored answer replayed as a stream ("apply to file")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from ai.providers.base import ProviderEvent, TextDelta

COALESCE_S = 0.015
MAX_BATCH_CHARS = 2048
REPLAY_PIECE = 24


class PieceBatch:
    """Pieces arriving less than ``COALESCE_S`` after the last write go out together (at
    most ``COALESCE_S`` later, by a timer): a fast provider's tokens become fewer, larger
    updates; a slow one's are written as they come. The first piece is written at once."""

    def __init__(self, write: Callable[[str], bool]) -> None:
        self.write = write
        self.pending: list[str] = []
        self.size = 0
        self.last = 0.0
        self.wrote = False
        self.open = True
        self.timer: asyncio.TimerHandle | None = None

    def add(self, piece: str) -> bool:
        """False once the edit can write no more."""
        if piece:
            self.pending.append(piece)
            self.size += len(piece)
        wait = COALESCE_S - (time.monotonic() - self.last)
        if not self.wrote or wait <= 0 or self.size >= MAX_BATCH_CHARS:
            self.flush()
        elif self.pending and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(wait, self.flush)
        return self.open

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.pending or not self.open:
            return
        text = "".join(self.pending)
        self.pending.clear()
        self.size = 0
        self.last = time.monotonic()
        self.wrote = True
        self.open = self.write(text)


async def replay_text(text: str) -> AsyncIterator[ProviderEvent]:
    """``text`` as a provider stream of small pieces (no usage: no model was asked)."""
    for index in range(0, len(text), REPLAY_PIECE):
        yield TextDelta(text[index : index + REPLAY_PIECE])
        await asyncio.sleep(0)
