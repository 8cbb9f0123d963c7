"""Fan-out between server processes, behind one small interface.

Every hub (documents, project channels, AI chat, terminals) publishes bytes on a named
channel and subscribes handlers to channels. A broker drops its own echoes: a handler
only ever sees messages that another instance published. Two implementations:

- ``LocalBroker``: in-process, the embedded default. Instances that share one ``LocalBus``
  see each other (used to test multi-node logic in one process); alone it delivers nothing.
- ``RedisBroker`` (``collab.redis_broker``): Redis pub/sub, for several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

# (channel, payload) -> None. Handlers must not block; they run on the event loop.
Handler = Callable[[str, bytes], Awaitable[None]]
ResubscribeCallback = Callable[[], Awaitable[None]]


class Broker(Protocol):
    instance_id: str

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        """Publish without waiting: queued, delivered in order with ``publish``'s messages.

        For code that must not yield (a frame handled inside the transport's callback).
        """
        ...

    async def subscribe(self, channel: str, handler: Handler) -> None: ...

    async def unsubscribe(self, channel: str, handler: Handler) -> None: ...

    def on_resubscribe(self, callback: ResubscribeCallback) -> None:
        """Run ``callback`` after the broker (re)subscribed, so hubs can repair gaps."""
        ...


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
