"""The parts of one process, started in order and stopped in reverse, in one place.

Each part registers how it stops as soon as it has started. Stopping runs every
registered stop, last started first; a stop that raises (or hangs past its timeout) is
logged and the others still run, so one broken part cannot leave the database pool, the
broker or the sockets of another part open. A part that fails to start stops those
started before it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Stop = Callable[[], Awaitable[None] | None]
STOP_TIMEOUT_S = 60.0


class Lifecycle:
    def __init__(self, stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.stop_timeout_s = stop_timeout_s
        self._stops: list[tuple[str, Stop]] = []

    async def start(self, name: str, start: Callable[[], Awaitable[None]], stop: Stop) -> None:
        """Start one part; from then on ``stop_all`` stops it."""
        await start()
        self._stops.append((name, stop))

    def on_stop(self, name: str, stop: Stop) -> None:
        """A part that needs no start (or started elsewhere) but must be stopped."""
        self._stops.append((name, stop))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._stops]

    async def stop_all(self) -> list[str]:
        """Stop every part, last started first; the names of those that failed to stop."""
        failed: list[str] = []
        while self._stops:
            name, stop = self._stops.pop()
            try:
                result = stop()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, self.stop_timeout_s)
            except Exception:
                failed.append(name)
                log.exception("stopping %s failed; stopping the other parts", name)
        return failed
