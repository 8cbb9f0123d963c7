"""Lookups asked at the same time, answered by one query (like a group commit).

After a restart every stock client reconnects within the same few milliseconds
(y-websocket's backoff has no jitter): thousands of sockets each asking for their access
and hundreds of documents each being loaded. One statement per lookup was thousands of
round trips, each a backend wake-up on the server's core. Here, while one query runs, new
lookups wait for the next one, which asks for all of them at once (a key asked twice in a
group is read once).

Nothing is cached: every lookup is answered by a query that started after it was asked,
so it sees everything committed before it was asked, as a query of its own would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Keys per query: parameters and results stay small, and a long group waits for no more
# than one such query.
MAX_GROUP = 1000


class Grouped(Generic[K, V]):
    """``ask(key)``: the value ``answer`` gives for it among a group of keys (None: absent).

    Owns the task that runs the queries: it exists while lookups wait and ends with the
    last group; ``stop`` cancels it and refuses later lookups."""

    def __init__(
        self,
        answer: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        name: str,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._answer = answer
        self._name = name
        self.max_group = max_group
        self._waiting: dict[K, asyncio.Future[V | None]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self.queries = 0  # groups answered (tests count them)

    async def ask(self, key: K) -> V | None:
        if self._stopped:
            raise RuntimeError(f"{self._name} is stopped")
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=self._name)
        # Shielded: a caller that goes away must not cancel the answer others wait for.
        return await asyncio.shield(future)

    async def stop(self) -> None:
        self._stopped = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _run(self) -> None:
        try:
            while self._waiting:
                # Lookups asked in this loop iteration join the group.
                await asyncio.sleep(0)
                group = dict(list(self._waiting.items())[: self.max_group])
                for key in group:
                    del self._waiting[key]
                await self._settle(group)
        finally:
            if self._runner is asyncio.current_task():
                self._runner = None

    async def _settle(self, group: dict[K, asyncio.Future[V | None]]) -> None:
        self.queries += 1
        try:
            found = await self._answer(list(group))
        except asyncio.CancelledError:
            for future in group.values():
                future.cancel()
            raise
        except Exception as exc:  # each caller reports it, as with a query of its own
            for future in group.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for key, future in group.items():
            if not future.done():
                future.set_result(found.get(key))
