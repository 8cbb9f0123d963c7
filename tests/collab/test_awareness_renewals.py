"""Awareness renewals go out batched per room (collab/awareness.py): held at most
``awareness_renewal_delay_s``, one frame to every peer (the sender too), while a change
still goes out at once. Then stock y-websocket clients idle past y-protocols' 30 s timeouts:
nobody loses a cursor and nobody reconnects, a client alone in its room included."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from broker.local import LocalBroker
from collab import protocol
from collab.config import CollabConfig
from collab.hub import DocumentHub
from server.settings import Settings
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_until
from tests.collab.peers import ClientPeer
from tests.collab.test_hub import FAST, CountingStore, connect, eventually, new_file
from tests.support.servers import LiveServer

DELAY = 0.3
STATE_A = '{"user":"a"}'
STATE_B = '{"user":"b"}'


def frame(*entries: tuple[int, int, str]) -> bytes:
    return protocol.awareness_frame(protocol.encode_awareness(
        [protocol.AwarenessEntry(*entry) for entry in entries]))


def awareness_frames(peer: ClientPeer) -> list[list[tuple[int, int, str]]]:
    """The awareness frames a peer received, as (client id, clock, state) lists."""
    out = []
    for raw in peer.frames:
        parsed = protocol.parse_frame(raw)
        if parsed.kind == protocol.MSG_AWARENESS:
            out.append([(e.client_id, e.clock, e.state)
                        for e in protocol.parse_awareness(parsed.payload)])
    return out


@pytest.fixture
async def hub() -> AsyncIterator[DocumentHub]:
    broker = LocalBroker("solo")
    await broker.start()
    h = DocumentHub(CountingStore(), broker,
                    dataclasses.replace(FAST, awareness_renewal_delay_s=DELAY))
    await h.start()
    yield h
    await h.stop()
    await broker.close()


async def two_peers(hub: DocumentHub) -> tuple[object, ClientPeer, ClientPeer]:
    assert isinstance(hub.store, CountingStore)
    file_id = new_file(hub.store)
    a, b = ClientPeer("alice"), ClientPeer("bob")
    room = await connect(hub, file_id, a)
    await connect(hub, file_id, b)
    hub.receive(room, a, frame((1, 1, STATE_A)))
    hub.receive(room, b, frame((2, 1, STATE_B)))
    assert b.awareness[1] == STATE_A and a.awareness[2] == STATE_B  # states: at once
    a.frames.clear()
    b.frames.clear()
    return room, a, b


async def test_renewals_wait_and_go_out_together_to_every_peer(hub: DocumentHub) -> None:
    room, a, b = await two_peers(hub)
    sent = time.monotonic()
    hub.receive(room, a, frame((1, 2, STATE_A)))
    hub.receive(room, b, frame((2, 2, STATE_B)))
    await asyncio.sleep(DELAY / 3)
    assert awareness_frames(a) == awareness_frames(b) == []  # held
    await eventually(lambda: bool(awareness_frames(b)), timeout=DELAY * 10)
    waited = time.monotonic() - sent
    both = [(1, 2, STATE_A), (2, 2, STATE_B)]
    # One frame with both renewals, to both peers: each also gets its own back (a stock
    # client closes a socket that received nothing for 30 s).
    assert awareness_frames(a) == awareness_frames(b) == [both]
    assert DELAY * 0.9 <= waited < DELAY + 1.0
    # Their echoes (the other's renewal, re-encoded) change nothing and go nowhere.
    a.frames.clear()
    b.frames.clear()
    hub.receive(room, a, frame((2, 2, STATE_B)))
    hub.receive(room, b, frame((1, 2, STATE_A)))
    hub.receive(room, a, frame(*both))
    await asyncio.sleep(DELAY * 2)
    assert awareness_frames(a) == awareness_frames(b) == []


async def test_a_change_goes_out_at_once_and_supersedes_the_held_renewal(
    hub: DocumentHub,
) -> None:
    room, a, b = await two_peers(hub)
    hub.receive(room, a, frame((1, 2, STATE_A)))  # renewal: held
    moved = '{"user":"a","cursor":5}'
    hub.receive(room, a, frame((1, 3, moved)))  # a change: now
    assert awareness_frames(b) == [[(1, 3, moved)]]
    await asyncio.sleep(DELAY * 3)
    # Nothing more: the held renewal (clock 2) was older than what went out.
    assert awareness_frames(b) == [[(1, 3, moved)]]
    assert awareness_frames(a) == []


async def test_a_frame_with_a_change_and_a_renewal_goes_out_whole_at_once(
    hub: DocumentHub,
) -> None:
    room, a, b = await two_peers(hub)
    a_second = '{"user":"a","tab":2}'
    hub.receive(room, a, frame((3, 1, a_second)))  # a second client id of alice's
    b.frames.clear()
    hub.receive(room, a, frame((1, 2, STATE_A), (3, 2, '{"user":"a","tab":3}')))
    assert awareness_frames(b) == [[(1, 2, STATE_A), (3, 2, '{"user":"a","tab":3}')]]


async def test_a_closed_socket_announces_its_removal_and_no_renewal_after(
    hub: DocumentHub,
) -> None:
    room, a, b = await two_peers(hub)
    hub.receive(room, a, frame((1, 2, STATE_A)))  # held
    hub.leave(room, a)  # type: ignore[arg-type]
    assert awareness_frames(b) == [[(1, 3, "null")]]
    await asyncio.sleep(DELAY * 3)
    assert awareness_frames(b) == [[(1, 3, "null")]]
    assert b.awareness[1] == "null"


async def test_a_newcomer_gets_the_renewed_clock_before_the_batch_goes_out(
    hub: DocumentHub,
) -> None:
    room, a, _b = await two_peers(hub)
    hub.receive(room, a, frame((1, 2, STATE_A)))  # held
    c = ClientPeer("carol")
    await connect(hub, room.file_id, c)  # type: ignore[attr-defined]
    assert sorted(awareness_frames(c)[0]) == [(1, 2, STATE_A), (2, 1, STATE_B)]


async def test_no_delay_relays_each_renewal_at_once() -> None:
    broker = LocalBroker("solo")
    await broker.start()
    store = CountingStore()
    h = DocumentHub(store, broker, dataclasses.replace(FAST, awareness_renewal_delay_s=0))
    await h.start()
    try:
        room, a, b = await two_peers(h)
        hub_renewal = frame((1, 2, STATE_A))
        h.receive(room, a, hub_renewal)
        assert awareness_frames(b) == [[(1, 2, STATE_A)]]
        assert awareness_frames(a) == [[(1, 2, STATE_A)]]  # back to the sender too
    finally:
        await h.stop()
        await broker.close()


def test_a_delay_past_the_peers_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="DOC_AWARENESS_RENEWAL_DELAY_S"):
        CollabConfig.from_env({"DOC_AWARENESS_RENEWAL_DELAY_S": "20"})
    assert CollabConfig.from_env({}).awareness_renewal_delay_s == 5.0


# ---- stock clients past y-protocols' 30 s timeouts -------------------------------------


async def test_stock_clients_idle_past_the_timeouts_keep_cursors_and_sockets(
    doc_settings: Settings, world: DocWorld,
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    """y-protocols drops a remote state not renewed for 30 s and y-websocket closes a socket
    that received no message for 30 s: with the default delay (5 s), two clients of one
    file keep each other's cursor and a client alone in its file keeps its socket."""
    assert doc_settings.collab.awareness_renewal_delay_s == 5.0
    server = await live_server(doc_settings)
    shared, lone_file = await world.new_file("shared"), await world.new_file("alone")
    token = world.token(world.owner)
    alice = await NodeAgent.start(server.ws_url, shared, token)
    bob = await NodeAgent.start(server.ws_url, shared, token)
    lone = await NodeAgent.start(server.ws_url, lone_file, token)
    agents = (alice, bob, lone)
    try:
        for agent in agents:
            await agent.wait_synced()
        await alice.call("set_awareness", state={"user": {"name": "alice"}})
        await bob.call("set_awareness", state={"user": {"name": "bob"}})

        async def sees_each_other() -> bool:
            a_sees = await alice.call("awareness")
            b_sees = await bob.call("awareness")
            return ({"user": {"name": "bob"}} in a_sees.values()
                    and {"user": {"name": "alice"}} in b_sees.values())

        await wait_until(sees_each_other, 10)
        await asyncio.sleep(40)  # past both 30 s timeouts, and two renewals of each client
        assert await sees_each_other(), "a renewed cursor was dropped as outdated"
        assert await alice.call("awareness_removed") == []
        assert await bob.call("awareness_removed") == []
        for agent in agents:
            connected = [e for e in agent.events
                         if e["event"] == "status" and e["status"] == "connected"]
            assert len(connected) == 1, "a client reconnected (no message for 30 s?)"
            assert agent.close_codes() == []
        assert await lone.text() == "alone"
    finally:
        for agent in agents:
            await agent.stop()
