"""Fan-out between server processes, behind one small interface.

Every hub (documents, project channels, AI chat, terminals) publishes bytes on a named
channel and subscribes handlers to channels. A broker drops its own echoes: a handler
only ever sees messages that another instance published. Two implementations:

- ``LocalBroker`` (``broker.local``): in-process, the embedded default. Instances that share
  one ``LocalBus`` see each other (used to test multi-node logic in one process); alone it
  delivers nothing.
- ``RedisBroker`` (``broker.redis_broker``): Redis pub/sub, for several processes.

Both pass the same contract tests (tests/broker/test_redis_broker.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

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
