"""Redis pub/sub fan-out between server processes (the cluster ``Broker``).

Why over 400 lines: the reader, the pipelined writer and reconnection share the two
connections and the subscription set; splitting them would spread one state machine over
modules.

Wire format: a message on ``prefix + channel`` is the sender's 16-byte instance id
followed by the payload; a broker drops messages carrying its own id (echoes).

One process holds two Redis connections: one pub/sub connection (subscribed to every
channel a local hub listens on, changed dynamically) read by a reader task, and one
command connection written by a writer task that pipelines queued ``PUBLISH`` commands.
``publish`` only enqueues: no task per message, one FIFO so per-channel order holds, and
it never raises into the hot path. While Redis is unreachable, publishes are dropped and
counted (pub/sub is at-most-once anyway; the hubs repair gaps with state vectors), the
reader reconnects with capped exponential backoff and jitter, resubscribes every channel
and then runs the ``on_resubscribe`` callbacks so rooms publish their Step1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from broker import metrics
from broker.interface import Handler, ResubscribeCallback

log = logging.getLogger(__name__)

SENDER_ID_BYTES = 16
CONNECTION_ERRORS = (RedisError, OSError, TimeoutError, EOFError)


def sender_id(instance_id: str) -> bytes:
    """The fixed 16-byte sender tag: the instance id itself when it is 16 ASCII chars."""
    raw = instance_id.encode()
    if len(raw) == SENDER_ID_BYTES:
        return raw
    return hashlib.blake2b(raw, digest_size=SENDER_ID_BYTES // 2).hexdigest().encode()


@dataclass
class BrokerStats:
    published: int = 0
    received: int = 0
    echoes: int = 0
    dropped: int = 0
    reconnects: int = 0


@dataclass(frozen=True)
class RedisBrokerConfig:
    publish_queue_max: int = 10_000
    publish_batch_max: int = 256
    reconnect_base_s: float = 0.05
    reconnect_max_s: float = 2.0
    # An idle pub/sub connection is pinged this often; no answer within another
    # interval means the link is dead even without a TCP reset (network partition).
    ping_interval_s: float = 5.0
    connect_timeout_s: float = 2.0
    command_timeout_s: float = 5.0
    subscribe_confirm_s: float = 2.0
    drain_on_close_s: float = 1.0


class RedisBroker:
    """``Broker`` over Redis pub/sub. Owns a reader task and a writer task."""

    def __init__(
        self,
        url: str,
        instance_id: str,
        prefix: str = "",
        config: RedisBrokerConfig | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.url = url
        self.prefix = prefix
        self.config = config or RedisBrokerConfig()
        self.stats = BrokerStats()
        self._sender = sender_id(instance_id)
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._resubscribe: list[ResubscribeCallback] = []
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queue_ready = asyncio.Event()
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        # redis-py is typed loosely (types-redis lags the library): kept as Any here.
        self._client: Any = None
        self._publish_conn: Any = None  # the writer's connection, held between batches
        self._pubsub: Any = None
        self._connected = False
        self._closing = False
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._first_connect = asyncio.Event()
        self._last_rx = 0.0
        self._sub_lock = asyncio.Lock()
        self._drained = asyncio.Event()
        # A test hook like ``LocalBus.filter``: return False to drop an incoming message on
        # purpose (gap-repair tests drop updates between real processes with it).
        self.filter: Callable[[str, bytes], bool] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._connected

    def _make_client(self) -> Any:
        factory: Any = aioredis.Redis.from_url
        return factory(
            self.url,
            socket_connect_timeout=self.config.connect_timeout_s,
            # No per-read timer (it costs more than the read): publishing has one deadline
            # per pipeline, the pub/sub link a ping watchdog.
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            max_connections=4,
        )

    async def start(self) -> None:
        """Start the tasks and wait (briefly) for the first connection.

        A Redis that is down at start does not stop the server: it starts degraded
        and the reader keeps reconnecting.
        """
        self._client = self._make_client()
        self._reader = asyncio.create_task(self._read_loop(), name="redis-broker-reader")
        self._writer = asyncio.create_task(self._write_loop(), name="redis-broker-writer")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_connect.wait(), self.config.connect_timeout_s)
        if not self._connected:
            log.warning("redis broker: %s unreachable at start; serving locally", self.url)

    async def close(self) -> None:
        if self._queue and self._connected:
            # What the hubs published while stopping (Step1s, presence "bye") goes out first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self.config.drain_on_close_s)
        self._closing = True
        self._queue_ready.set()
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
        for task in (self._reader, self._writer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, *CONNECTION_ERRORS):
                    await asyncio.wait_for(task, 5)
        await self._drop_pubsub()
        if self._client is not None:
            await self._release_publish_conn(disconnect=False)
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._client.aclose()
        self._set_connected(False)
        self._handlers.clear()
        for fut in self._confirm.values():
            if not fut.done():
                fut.set_result(None)  # releases waiting subscribers; nothing is subscribed
        self._confirm.clear()

    # -- publishing --------------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        """Queue ``payload`` for every other instance; drop (counted) while disconnected."""
        self.publish_nowait(channel, payload)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        if not self._connected or self._closing:
            self._drop(1, "disconnected")
            return
        if len(self._queue) >= self.config.publish_queue_max:
            self._drop(1, "queue_full")
            return
        self._queue.append(((self.prefix + channel).encode(), self._sender + payload))
        self._drained.clear()
        self._queue_ready.set()

    def _drop(self, count: int, reason: str) -> None:
        self.stats.dropped += count
        metrics.DROPPED.labels(reason).inc(count)

    async def _write_loop(self) -> None:
        batch_max = self.config.publish_batch_max
        while not self._closing:
            await self._queue_ready.wait()
            self._queue_ready.clear()
            while self._queue and not self._closing:
                batch = [self._queue.popleft() for _ in range(min(batch_max, len(self._queue)))]
                if not self._connected or self._client is None:
                    self._drop(len(batch), "disconnected")
                    continue
                try:
                    async with asyncio.timeout(self.config.command_timeout_s):
                        await self._publish_batch(batch)
                except CONNECTION_ERRORS as exc:
                    log.warning("redis broker: publish of %d failed: %r", len(batch), exc)
                    # Dropped, not retried: the reader notices a dead server on its own
                    # connection and the hubs repair the gap after the reconnect.
                    self._drop(len(batch), "error")
                    continue
                self.stats.published += len(batch)
                metrics.PUBLISHED.inc(len(batch))
            if not self._queue:
                self._drained.set()

    async def _publish_batch(self, batch: list[tuple[bytes, bytes]]) -> None:
        """One write of every PUBLISH of the batch on the held connection, then its replies.

        Not redis-py's ``Pipeline``: per batch it costs about twice the CPU of the write and
        the reads themselves (bench/README.md, issue 21), and a batch is often one message.
        """
        conn = self._publish_conn
        if conn is None:
            conn = self._publish_conn = await self._client.connection_pool.get_connection()
        try:
            commands = [(b"PUBLISH", channel, data) for channel, data in batch]
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            for _ in commands:
                await conn.read_response()
        except BaseException:
            # Replies may be left unread on it: never reuse it (the next batch takes another).
            await self._release_publish_conn(disconnect=True)
            raise

    async def _release_publish_conn(self, *, disconnect: bool) -> None:
        conn, self._publish_conn = self._publish_conn, None
        if conn is None:
            return
        with contextlib.suppress(*CONNECTION_ERRORS):
            if disconnect:
                await conn.disconnect()
            await self._client.connection_pool.release(conn)

    # -- subscribing -------------------------------------------------------------------

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Add ``handler``; returns once Redis confirmed the subscription (or gave up)."""
        handlers = self._handlers[channel]
        handlers.append(handler)
        if len(handlers) == 1:
            await self._confirmed(await self._sync_subscription(channel))

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        handlers = self._handlers.get(channel)
        if not handlers or handler not in handlers:
            return
        handlers.remove(handler)
        if handlers:
            return
        del self._handlers[channel]
        await self._sync_subscription(channel)

    def on_resubscribe(self, callback: ResubscribeCallback) -> None:
        self._resubscribe.append(callback)

    async def _sync_subscription(self, channel: str) -> list[asyncio.Future[None]]:
        """Make Redis match ``self._handlers`` for ``channel``.

        Under one lock, deciding from the handlers *now*: an unsubscribe racing a new
        subscribe of the same channel cannot leave Redis unsubscribed while a handler waits.
        """
        async with self._sub_lock:
            if channel in self._handlers:
                return await self._send_subscribe([channel])
            pubsub = self._pubsub
            if pubsub is not None:
                try:
                    await pubsub.unsubscribe((self.prefix + channel).encode())
                except CONNECTION_ERRORS as exc:
                    log.info("redis broker: unsubscribe %s deferred: %r", channel, exc)
            return []

    async def _send_subscribe(self, channels: list[str]) -> list[asyncio.Future[None]]:
        """Send SUBSCRIBE (hold ``_sub_lock``); the futures the reader resolves on confirm."""
        pubsub = self._pubsub
        if pubsub is None or not channels:
            return []  # the reader subscribes every known channel when it (re)connects
        names = [(self.prefix + c).encode() for c in channels]
        loop = asyncio.get_running_loop()
        futures = []
        for name in names:
            fut = self._confirm.get(name)
            if fut is None or fut.done():
                fut = loop.create_future()
                self._confirm[name] = fut
            futures.append(fut)
        try:
            await pubsub.subscribe(*names)
        except CONNECTION_ERRORS as exc:
            log.info("redis broker: subscribe deferred until reconnect: %r", exc)
        return futures

    async def _confirmed(self, futures: list[asyncio.Future[None]]) -> None:
        """Wait (bounded) until Redis confirmed these subscriptions."""
        if futures:
            await asyncio.wait(futures, timeout=self.config.subscribe_confirm_s)

    # -- reading -----------------------------------------------------------------------

    def _set_connected(self, value: bool) -> None:
        self._connected = value
        metrics.CONNECTED.labels(self.instance_id).set(1 if value else 0)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.aclose()

    async def _read_loop(self) -> None:
        attempt = 0
        had_connection = False
        while not self._closing:
            try:
                confirmations = await self._connect_pubsub()
            except CONNECTION_ERRORS as exc:
                await self._drop_pubsub()
                self._set_connected(False)
                delay = min(self.config.reconnect_max_s, self.config.reconnect_base_s * 2**attempt)
                attempt += 1
                log.debug("redis broker: connect failed (%r); retry in %.2fs", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            attempt = 0
            self._set_connected(True)
            self._first_connect.set()
            repair = None
            if had_connection:
                self.stats.reconnects += 1
                metrics.RECONNECTS.inc()
                log.warning("redis broker: reconnected to %s, repairing gaps", self.url)
                repair = self._repair_after(confirmations)
            had_connection = True
            await self._serve_connection(repair)
            self._set_connected(False)
            await self._drop_pubsub()

    async def _serve_connection(self, repair: Coroutine[Any, Any, None] | None) -> None:
        """Read until the link fails (error, or the watchdog finds it silent)."""
        pump = asyncio.create_task(self._pump(), name="redis-broker-pump")
        watchdog = asyncio.create_task(self._watchdog(), name="redis-broker-watchdog")
        tasks = [pump, watchdog]
        if repair is not None:
            tasks.append(asyncio.create_task(repair, name="redis-broker-repair"))
        try:
            await asyncio.wait({pump, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except CONNECTION_ERRORS as exc:
                    log.warning("redis broker: connection lost: %r", exc)

    async def _connect_pubsub(self) -> list[asyncio.Future[None]]:
        if self._client is not None:
            # Fresh command connections too: the old ones point at a dead server.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._client.connection_pool.disconnect()
        assert self._client is not None
        await asyncio.wait_for(self._client.ping(), self.config.connect_timeout_s)
        pubsub = self._client.pubsub()
        await asyncio.wait_for(pubsub.connect(), self.config.connect_timeout_s)
        async with self._sub_lock:
            self._pubsub = pubsub
            return await self._send_subscribe(list(self._handlers))

    async def _repair_after(self, confirmations: list[asyncio.Future[None]]) -> None:
        """Once resubscribed (confirmed by Redis), let the hubs publish their Step1s."""
        await self._confirmed(confirmations)
        await self._run_resubscribe_callbacks()

    async def _run_resubscribe_callbacks(self) -> None:
        for callback in list(self._resubscribe):
            try:
                await callback()
            except Exception:
                log.exception("redis broker: resubscribe callback failed")

    async def _pump(self) -> None:
        # Blocking reads: no timer per message (the watchdog detects a silent link). Straight
        # from the connection: ``PubSub.get_message`` costs four times the read (retry
        # wrapper, health check, a dict and a telemetry hook per message); only the rare
        # replies that are not messages go through the PubSub's own bookkeeping.
        while not self._closing:
            pubsub = self._pubsub
            if pubsub is None:
                return
            response = await pubsub.connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self._last_rx = time.monotonic()
            if isinstance(response, list) and len(response) == 3 and response[0] == b"message":
                await self._dispatch_message(response[1], response[2])
                continue
            message: dict[str, Any] | None = await pubsub.handle_message(response)
            if message is not None:
                await self._dispatch(message)

    async def _watchdog(self) -> None:
        """Ping an idle link; return (ending the connection) when a ping goes unanswered."""
        interval = self.config.ping_interval_s
        self._last_rx = time.monotonic()
        pinged_at: float | None = None
        while not self._closing:
            await asyncio.sleep(interval)
            pubsub = self._pubsub
            if pubsub is None:
                return
            now = time.monotonic()
            if pinged_at is not None and self._last_rx < pinged_at:
                log.warning("redis broker: no answer to a ping for %.1fs", now - pinged_at)
                return
            if now - self._last_rx >= interval:
                pinged_at = now
                await asyncio.wait_for(pubsub.ping(), self.config.command_timeout_s)
            else:
                pinged_at = None

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "subscribe":
            fut = self._confirm.pop(message["channel"], None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind == "message":
            await self._dispatch_message(message["channel"], message["data"])

    async def _dispatch_message(self, name: bytes, data: bytes) -> None:
        if data[:SENDER_ID_BYTES] == self._sender:
            self.stats.echoes += 1
            return
        channel = name.decode()[len(self.prefix) :]
        handlers = self._handlers.get(channel)
        if not handlers:
            return
        payload = data[SENDER_ID_BYTES:]
        if self.filter is not None and not self.filter(channel, payload):
            self._drop(1, "filtered")
            return
        self.stats.received += 1
        metrics.RECEIVED.inc()
        for handler in list(handlers):
            try:
                await handler(channel, payload)
            except Exception:
                log.exception("broker handler failed on %s", channel)

    # -- introspection -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "channels": len(self._handlers),
            "queued": len(self._queue),
            "published": self.stats.published,
            "received": self.stats.received,
            "dropped": self.stats.dropped,
            "reconnects": self.stats.reconnects,
            "at": time.time(),
        }
