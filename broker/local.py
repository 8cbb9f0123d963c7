"""The in-process ``Broker``: instances sharing one ``LocalBus`` see each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable

from broker.interface import Handler, ResubscribeCallback

log = logging.getLogger(__name__)


class LocalBus:
    """What several ``LocalBroker`` instances in one process share."""

    def __init__(self) -> None:
        self.brokers: list[LocalBroker] = []
        # A test hook: return False to drop a message on purpose (gap-repair tests).
        self.filter: Callable[[str, str, bytes], bool] | None = None


class LocalBroker:
    def __init__(self, instance_id: str, bus: LocalBus | None = None) -> None:
        self.instance_id = instance_id
        self.bus = bus or LocalBus()
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._resubscribe: list[ResubscribeCallback] = []
        # publish_nowait's queue and the task that delivers it (only while others share the
        # bus; alone, nothing is ever delivered and nothing is queued).
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        self.bus.brokers.append(self)

    async def close(self) -> None:
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(drainer), 5)
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        if self in self.bus.brokers:
            self.bus.brokers.remove(self)
        self._handlers.clear()

    async def publish(self, channel: str, payload: bytes) -> None:
        # After what publish_nowait queued: one order for both.
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)
        await self._send(channel, payload)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        if len(self.bus.brokers) < 2 or self not in self.bus.brokers:
            return
        self._outbox.append((channel, payload))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name=f"local-broker-{self.instance_id}"
            )

    async def _drain(self) -> None:
        while self._outbox:
            channel, payload = self._outbox.popleft()
            await self._send(channel, payload)

    async def _send(self, channel: str, payload: bytes) -> None:
        for broker in list(self.bus.brokers):
            if broker is self:
                continue
            if self.bus.filter is not None and not self.bus.filter(
                self.instance_id, channel, payload
            ):
                continue
            await broker._deliver(channel, payload)

    async def _deliver(self, channel: str, payload: bytes) -> None:
        for handler in list(self._handlers.get(channel, ())):
            try:
                await handler(channel, payload)
            except Exception:
                log.exception("broker handler failed on %s", channel)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.get(channel)
        if handlers and handler in handlers:
            handlers.remove(handler)
            if not handlers:
                del self._handlers[channel]

    def on_resubscribe(self, callback: ResubscribeCallback) -> None:
        self._resubscribe.append(callback)
