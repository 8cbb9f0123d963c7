"""The broker contract (local and Redis) and the Redis broker's behaviour when Redis goes away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from broker.interface import Broker
from broker.local import LocalBroker, LocalBus
from broker.redis_broker import RedisBroker, RedisBrokerConfig, sender_id
from tests.cluster.private_redis import PrivateRedis

Pair = tuple[Broker, Broker]
FAST = RedisBrokerConfig(reconnect_base_s=0.02, reconnect_max_s=0.2, ping_interval_s=0.5)


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    async def __call__(self, channel: str, payload: bytes) -> None:
        self.items.append((channel, payload))

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in self.items]


def ids() -> tuple[str, str]:
    return uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]


@pytest.fixture(params=["local", "redis"])
async def pair(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Pair]:
    a_id, b_id = ids()
    a: Broker
    b: Broker
    if request.param == "local":
        bus = LocalBus()
        a, b = LocalBroker(a_id, bus), LocalBroker(b_id, bus)
    else:
        a = RedisBroker(redis_url, a_id, prefix=redis_prefix, config=FAST)
        b = RedisBroker(redis_url, b_id, prefix=redis_prefix, config=FAST)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()


async def test_messages_reach_other_instances_and_never_the_sender(pair: Pair) -> None:
    a, b = pair
    at_a, at_b = Inbox(), Inbox()
    await a.subscribe("doc:1", at_a)
    await b.subscribe("doc:1", at_b)
    await a.publish("doc:1", b"from a")
    await b.publish("doc:1", b"from b")
    await until(lambda: len(at_a.items) == 1 and len(at_b.items) == 1)
    assert at_a.items == [("doc:1", b"from b")]
    assert at_b.items == [("doc:1", b"from a")]


async def test_per_channel_order_holds_under_a_burst(pair: Pair) -> None:
    a, b = pair
    first, second = Inbox(), Inbox()
    await b.subscribe("doc:x", first)
    await b.subscribe("doc:y", second)
    for i in range(2000):
        await a.publish("doc:x" if i % 2 else "doc:y", i.to_bytes(4, "big"))
    await until(lambda: len(first.items) + len(second.items) == 2000)
    odd = [int.from_bytes(p, "big") for p in first.payloads()]
    even = [int.from_bytes(p, "big") for p in second.payloads()]
    assert odd == list(range(1, 2000, 2))
    assert even == list(range(0, 2000, 2))


async def test_unsubscribed_channels_and_handlers_get_nothing(pair: Pair) -> None:
    a, b = pair
    kept, removed, other = Inbox(), Inbox(), Inbox()
    await b.subscribe("project:1", kept)
    await b.subscribe("project:1", removed)
    await b.subscribe("project:2", other)
    await b.unsubscribe("project:1", removed)
    await b.unsubscribe("project:2", other)
    await a.publish("project:2", b"nobody")
    await a.publish("project:1", b"one")
    await until(lambda: len(kept.items) == 1)
    assert kept.payloads() == [b"one"]
    assert removed.items == [] and other.items == []


async def test_channels_of_another_prefix_are_invisible(redis_url: str) -> None:
    a_id, b_id = ids()
    a = RedisBroker(redis_url, a_id, prefix=f"p{uuid.uuid4().hex[:6]}:", config=FAST)
    b = RedisBroker(redis_url, b_id, prefix=f"p{uuid.uuid4().hex[:6]}:", config=FAST)
    c = RedisBroker(redis_url, b_id + "x", prefix=a.prefix, config=FAST)
    for broker in (a, b, c):
        await broker.start()
    try:
        at_b, at_c = Inbox(), Inbox()
        await b.subscribe("doc:1", at_b)
        await c.subscribe("doc:1", at_c)
        await a.publish("doc:1", b"same prefix only")
        await until(lambda: len(at_c.items) == 1)
        assert at_b.items == []
    finally:
        for broker in (a, b, c):
            await broker.close()


def test_sender_id_is_always_16_bytes() -> None:
    assert sender_id("0123456789abcdef") == b"0123456789abcdef"
    assert len(sender_id("node-1")) == 16
    assert sender_id("node-1") != sender_id("node-2")


async def test_unreachable_redis_at_start_degrades_without_raising() -> None:
    from tests.support.net import free_port

    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", ids()[0], config=FAST)
    started = time.monotonic()
    await broker.start()
    try:
        assert time.monotonic() - started < 5
        assert broker.healthy is False
        await broker.subscribe("doc:1", Inbox())
        await broker.publish("doc:1", b"dropped")
        assert broker.stats.dropped == 1
    finally:
        await broker.close()


async def test_redis_restart_drops_quietly_then_resubscribes_and_calls_repair(
    private_redis: PrivateRedis,
) -> None:
    a_id, b_id = ids()
    a = RedisBroker(private_redis.url, a_id, prefix="r:", config=FAST)
    b = RedisBroker(private_redis.url, b_id, prefix="r:", config=FAST)
    await a.start()
    await b.start()
    repairs: list[str] = []

    async def repair() -> None:
        repairs.append("b")
        await b.publish("doc:1", b"step1 after reconnect")

    b.on_resubscribe(repair)
    try:
        at_a, at_b = Inbox(), Inbox()
        await a.subscribe("doc:1", at_a)
        await b.subscribe("doc:1", at_b)
        await a.publish("doc:1", b"before")
        await until(lambda: at_b.payloads() == [b"before"])

        private_redis.stop_process()
        await until(lambda: not a.healthy and not b.healthy)
        local_calls = 0
        started = time.monotonic()
        for _ in range(100):  # the hot path neither raises nor blocks while Redis is down
            await a.publish("doc:1", b"lost")
            local_calls += 1
        assert time.monotonic() - started < 0.1
        assert a.stats.dropped >= local_calls

        private_redis.start_process()
        await until(lambda: a.healthy and b.healthy)
        await until(lambda: repairs == ["b"])  # once Redis confirmed the resubscription
        assert a.stats.reconnects == 1 and b.stats.reconnects == 1
        await until(lambda: b"step1 after reconnect" in at_a.payloads())
        await a.publish("doc:1", b"after")
        await until(lambda: at_b.payloads() == [b"before", b"after"])
    finally:
        await a.close()
        await b.close()


async def test_subscriptions_made_while_disconnected_apply_after_reconnect(
    private_redis: PrivateRedis,
) -> None:
    a_id, b_id = ids()
    a = RedisBroker(private_redis.url, a_id, config=FAST)
    b = RedisBroker(private_redis.url, b_id, config=FAST)
    await a.start()
    await b.start()
    try:
        private_redis.stop_process()
        await until(lambda: not b.healthy)
        inbox = Inbox()
        await b.subscribe("conv:9", inbox)
        private_redis.start_process()
        await until(lambda: a.healthy and b.healthy)
        # healthy means SUBSCRIBE was sent, not yet confirmed: publish until it lands
        deadline = time.monotonic() + 5
        while not inbox.items and time.monotonic() < deadline:
            await a.publish("conv:9", b"hello")
            await asyncio.sleep(0.02)
        assert inbox.payloads()[0] == b"hello"
    finally:
        await a.close()
        await b.close()


async def test_close_stops_the_broker_tasks(redis_url: str) -> None:
    broker = RedisBroker(redis_url, ids()[0], config=FAST)
    await broker.start()
    assert broker.healthy
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith("redis-broker")}
    await broker.close()
    assert all(task.done() for task in before)
    assert broker.healthy is False



async def test_a_frozen_redis_is_detected_by_the_ping_watchdog(
    private_redis: PrivateRedis,
) -> None:
    """SIGSTOP keeps the TCP connection open but silent: only the watchdog can notice."""
    import os
    import signal

    a_id, b_id = ids()
    a = RedisBroker(private_redis.url, a_id, config=FAST)
    b = RedisBroker(private_redis.url, b_id, config=FAST)
    await a.start()
    await b.start()
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    try:
        inbox = Inbox()
        await b.subscribe("term:p:1", inbox)
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        await until(lambda: not b.healthy, 5)
        # ping_interval 0.5 s: noticed after one idle interval plus one unanswered ping
        assert time.monotonic() - frozen < 2.5
        os.kill(pid, signal.SIGCONT)
        await until(lambda: a.healthy and b.healthy, 10)
        deadline = time.monotonic() + 5
        while not inbox.items and time.monotonic() < deadline:
            await a.publish("term:p:1", b"output")
            await asyncio.sleep(0.02)
        assert inbox.payloads()[0] == b"output"
    finally:
        os.kill(pid, signal.SIGCONT)
        await a.close()
        await b.close()


async def test_leaving_and_rejoining_a_channel_at_once_keeps_it_subscribed(
    redis_url: str, redis_prefix: str
) -> None:
    """A room unloading while another loads on the same channel (unsubscribe || subscribe)."""
    a_id, b_id = ids()
    a = RedisBroker(redis_url, a_id, prefix=redis_prefix, config=FAST)
    b = RedisBroker(redis_url, b_id, prefix=redis_prefix, config=FAST)
    await a.start()
    await b.start()
    try:
        old, new = Inbox(), Inbox()
        for round_ in range(20):
            await b.subscribe("project:7", old)
            await asyncio.gather(b.unsubscribe("project:7", old), b.subscribe("project:7", new))
            await a.publish("project:7", str(round_).encode())
            await until(lambda r=round_: str(r).encode() in new.payloads(), 3)  # type: ignore[misc]
            await b.unsubscribe("project:7", new)
        assert old.items == []
    finally:
        await a.close()
        await b.close()


async def test_messages_published_just_before_close_still_go_out(
    redis_url: str, redis_prefix: str
) -> None:
    """A stopping node's last words (presence "bye", final Step1s) are not cut off."""
    a_id, b_id = ids()
    a = RedisBroker(redis_url, a_id, prefix=redis_prefix, config=FAST)
    b = RedisBroker(redis_url, b_id, prefix=redis_prefix, config=FAST)
    await a.start()
    await b.start()
    try:
        inbox = Inbox()
        await b.subscribe("project:1", inbox)
        for i in range(500):
            await a.publish("project:1", str(i).encode())
        await a.close()
        await until(lambda: len(inbox.items) == 500)
        assert inbox.payloads()[-1] == b"499"
    finally:
        await b.close()


async def test_a_killed_publish_connection_is_replaced(private_redis: PrivateRedis) -> None:
    """The writer holds one connection between batches: when Redis drops it, the batch under
    way is dropped (counted) and later ones go out on a new connection, in order."""
    import redis.asyncio as aioredis

    a_id, b_id = ids()
    a = RedisBroker(private_redis.url, a_id, config=FAST)
    b = RedisBroker(private_redis.url, b_id, config=FAST)
    await a.start()
    await b.start()
    killer = aioredis.Redis.from_url(private_redis.url)
    try:
        inbox = Inbox()
        await b.subscribe("doc:k", inbox)
        await a.publish("doc:k", b"before")
        await until(lambda: inbox.payloads() == [b"before"])
        # Every plain client connection but the killer's: a's publishing connection only
        # (subscribers are of type pubsub).
        killed = await killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        deadline = time.monotonic() + 5
        sent = 0
        while b"again" not in inbox.payloads() and time.monotonic() < deadline:
            await a.publish("doc:k", b"again")
            sent += 1
            await asyncio.sleep(0.02)
        assert b"again" in inbox.payloads()
        assert a.healthy and b.healthy  # the subscribers' links were never touched
        for i in range(300):
            await a.publish("doc:k", i.to_bytes(2, "big"))
        await until(lambda: len(inbox.items) >= 300)
        tail = [int.from_bytes(p, "big") for p in inbox.payloads() if len(p) == 2]
        assert tail == list(range(300))
        assert a.stats.dropped <= sent
    finally:
        await killer.aclose()
        await a.close()
        await b.close()
