"""Awareness spoofing: a client id belongs to the socket (and user) that introduced it.

Rules as tables over ``AwarenessStates``; then the stock Node y-websocket client and raw
frames against a live server; then two nodes on Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect

from collab import protocol
from collab.awareness import REMOTE_HOLD_S, AwarenessStates
from collab.protocol import AwarenessEntry
from server.settings import Settings
from tests.collab.conftest import DocWorld
from tests.collab.node_agent import NodeAgent, wait_until
from tests.collab.test_ws_bad_input import doc_url, sync_fresh
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
ALICE_ID = 1111
ALICE_STATE = json.dumps({"user": {"name": "Alice"}, "cursor": 1})
FAKE_STATE = json.dumps({"user": {"name": "Alice"}, "cursor": 666, "evil": True})


@dataclass(eq=False)
class Socket:
    user_id: str
    awareness_ids: set[int] = field(default_factory=set)


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("icreate_doc_awareness_dropped_total", {"reason": reason})
    return value or 0.0


def entry(client_id: int, clock: int, state: str) -> AwarenessEntry:
    return AwarenessEntry(client_id, clock, state)


# ---- the rules, without a server ------------------------------------------------------


def test_another_users_socket_cannot_write_a_held_id() -> None:
    states = AwarenessStates()
    alice, mallory = Socket("alice"), Socket("mallory")
    assert states.apply_local([entry(ALICE_ID, 1, ALICE_STATE)], alice)
    before = dropped("foreign_id")
    # A newer clock, a far-future clock, a removal at the same clock: all refused.
    for forged in (entry(ALICE_ID, 2, FAKE_STATE), entry(ALICE_ID, 2**50, FAKE_STATE),
                   entry(ALICE_ID, 1, "null")):
        assert states.apply_local([forged], mallory) == []
    assert dropped("foreign_id") == before + 3
    assert mallory.awareness_ids == set() and alice.awareness_ids == {ALICE_ID}
    # Alice's own next update still goes through.
    assert states.apply_local([entry(ALICE_ID, 2, ALICE_STATE)], alice)
    # After Alice's socket closes, her id stays hers: nobody else may take it over.
    assert states.remove(alice.awareness_ids) is not None
    assert states.apply_local([entry(ALICE_ID, 10, FAKE_STATE)], mallory) == []
    back = Socket("alice")  # Alice reconnecting, same Yjs client id
    assert states.apply_local([entry(ALICE_ID, 4, ALICE_STATE)], back)


def test_a_frame_keeps_its_valid_entries_and_drops_the_rest() -> None:
    states = AwarenessStates()
    alice, mallory = Socket("alice"), Socket("mallory")
    states.apply_local([entry(ALICE_ID, 1, ALICE_STATE)], alice)
    invalid_before = dropped("invalid_state")
    frame = [
        entry(2, 1, '{"user": {"name": "Mallory"}}'),  # her own: kept
        entry(ALICE_ID, 5, FAKE_STATE),  # Alice's: dropped
        entry(3, 1, "{not json"),  # dropped
        entry(4, 1, "[1, 2]"),  # JSON, but not an object: dropped
        entry(5, 1, '"text"'),  # dropped
        entry(6, 1, " null "),  # null spelled otherwise: kept, as a removal
    ]
    accepted = states.apply_local(frame, mallory)
    assert [(e.client_id, e.state) for e in accepted] == [
        (2, '{"user": {"name": "Mallory"}}'), (6, "null"),
    ]
    assert dropped("invalid_state") == invalid_before + 3
    assert mallory.awareness_ids == {2}


def test_echoes_are_ignored_without_being_counted() -> None:
    states = AwarenessStates()
    alice, bob = Socket("alice"), Socket("bob")
    states.apply_local([entry(ALICE_ID, 3, ALICE_STATE)], alice)
    before = dropped("foreign_id")
    assert states.apply_local([entry(ALICE_ID, 3, ALICE_STATE)], bob) == []  # stock echo
    assert states.apply_local([entry(ALICE_ID, 2, ALICE_STATE)], bob) == []  # older echo
    assert dropped("foreign_id") == before


def test_the_same_user_may_take_over_an_id_from_its_other_socket() -> None:
    states = AwarenessStates()
    old, new = Socket("alice"), Socket("alice")
    states.apply_local([entry(ALICE_ID, 1, ALICE_STATE)], old)
    assert states.apply_local([entry(ALICE_ID, 2, ALICE_STATE)], new)
    assert old.awareness_ids == set() and new.awareness_ids == {ALICE_ID}
    # The old socket closing later does not remove the state its successor holds.
    assert states.remove(old.awareness_ids) is None


def test_ids_from_other_nodes_and_ids_held_here() -> None:
    states = AwarenessStates()
    mallory = Socket("mallory")
    # Another node's client: held by that node while it renews it.
    assert states.apply_remote([entry(ALICE_ID, 1, ALICE_STATE)], now=100.0)
    assert states.apply_local([entry(ALICE_ID, 9, FAKE_STATE)], mallory, now=101.0) == []
    assert states.apply_remote([entry(ALICE_ID, 2, ALICE_STATE)], now=110.0)
    assert states.apply_local(
        [entry(ALICE_ID, 9, FAKE_STATE)], mallory, now=110.0 + REMOTE_HOLD_S - 1
    ) == []
    # Its removal releases it at once (the client may come back through this node).
    assert states.apply_remote([entry(ALICE_ID, 3, "null")], now=111.0)
    alice = Socket("alice")
    assert states.apply_local([entry(ALICE_ID, 4, ALICE_STATE)], alice, now=112.0)
    # Now held here: another node's claim on it is dropped (this node has the word).
    before = dropped("foreign_id")
    assert states.apply_remote([entry(ALICE_ID, 50, FAKE_STATE)], now=113.0) == []
    assert dropped("foreign_id") == before + 1
    # A node that stopped renewing (killed) no longer holds its ids after REMOTE_HOLD_S.
    assert states.apply_remote([entry(77, 1, "{}")], now=200.0)
    assert states.apply_local([entry(77, 2, "{}")], Socket("carol"), now=200.0 + REMOTE_HOLD_S)


# ---- a live server: the stock Node client and raw frames ---------------------------------


class AsyncAwareness:
    """What one raw client has been told about awareness: client id -> (clock, state)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.states: dict[int, tuple[int, str]] = {}
        self.history: list[str] = []
        self.frames = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            assert isinstance(raw, bytes)
            frame = protocol.parse_frame(raw)
            if frame.kind == protocol.MSG_AWARENESS:
                self.frames += 1
                for item in protocol.parse_awareness(frame.payload):
                    self.states[item.client_id] = (item.clock, item.state)
                    self.history.append(item.state)

    async def ask(self) -> None:
        """Query the server's states and wait for the answer (it has handled what we sent)."""
        before = self.frames
        await self.ws.send(protocol.query_awareness())
        await wait_until(lambda: _true(self.frames > before))


def awareness_frame(*entries: AwarenessEntry) -> bytes:
    return protocol.awareness_frame(protocol.encode_awareness(list(entries)))


async def test_a_member_cannot_publish_under_another_clients_id(
    live_server: StartServer, world: DocWorld
) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("")
    mallory_id = await world.new_user("member")
    alice = await NodeAgent.start(server.ws_url, file_id, world.token(world.owner))
    bob = await NodeAgent.start(server.ws_url, file_id, world.token(await world.new_user("member")))
    try:
        await alice.wait_synced()
        await bob.wait_synced()
        await alice.call("set_awareness", state={"user": {"name": "Alice"}, "cursor": 1})
        alice_id = await alice.call("client_id")

        async def bob_sees_alice_at(cursor: int) -> bool:
            state = (await bob.call("awareness")).get(str(alice_id))
            return state is not None and state.get("cursor") == cursor
        await wait_until(lambda: bob_sees_alice_at(1))

        foreign_before = dropped("foreign_id")
        invalid_before = dropped("invalid_state")
        async with connect(doc_url(server, file_id, world.token(mallory_id))) as ws:
            await sync_fresh(ws)
            # Alice's id with a far-future clock and the attacker's content, beside the
            # attacker's own entry and two invalid ones, in one frame.
            await ws.send(awareness_frame(
                entry(alice_id, 2**40, FAKE_STATE),
                entry(424242, 1, json.dumps({"user": {"name": "Mallory"}})),
                entry(434343, 1, "{broken"),
                entry(444444, 1, "42"),
            ))
            await wait_until(lambda: _has(bob, 424242))  # the rest of the frame arrived
            assert dropped("foreign_id") == foreign_before + 1
            assert dropped("invalid_state") == invalid_before + 2
            states = await bob.call("awareness")
            assert "434343" not in states and "444444" not in states
            assert states[str(alice_id)]["cursor"] == 1
        # The attacker left; Alice's real updates still reach everyone.
        await alice.call("set_awareness", state={"user": {"name": "Alice"}, "cursor": 2})
        await wait_until(lambda: bob_sees_alice_at(2))
        await wait_until(lambda: _gone(bob, 424242))
        assert "evil" not in (await bob.call("awareness"))[str(alice_id)]
    finally:
        await alice.stop()
        await bob.stop()


async def test_a_removal_of_someone_elses_id_is_refused(
    live_server: StartServer, world: DocWorld
) -> None:
    server = await live_server(world.settings)
    file_id = await world.new_file("")
    alice_token = world.token(world.owner)
    mallory_token = world.token(await world.new_user("member"))
    async with connect(doc_url(server, file_id, alice_token)) as alice, \
            connect(doc_url(server, file_id, mallory_token)) as mallory:
        await sync_fresh(alice)
        await sync_fresh(mallory)
        watcher = AsyncAwareness(mallory)
        await alice.send(awareness_frame(entry(ALICE_ID, 1, ALICE_STATE)))
        await wait_until(lambda: _true(watcher.states.get(ALICE_ID) == (1, ALICE_STATE)))
        await mallory.send(awareness_frame(entry(ALICE_ID, 1, "null")))
        await mallory.send(awareness_frame(entry(ALICE_ID, 7, FAKE_STATE)))
        await watcher.ask()
        assert watcher.states[ALICE_ID] == (1, ALICE_STATE)
        watcher.task.cancel()


async def test_across_nodes_the_holding_node_has_the_word(
    doc_settings: Settings, redis_url: str, live_server: StartServer, world: DocWorld
) -> None:
    def node() -> Settings:
        return dataclasses.replace(
            doc_settings, redis_url=redis_url, instance_id=uuid.uuid4().hex[:16]
        )
    first, second = await live_server(node()), await live_server(node())
    file_id = await world.new_file("")
    alice_token = world.token(world.owner)
    mallory_token = world.token(await world.new_user("member"))
    carol_token = world.token(await world.new_user("member"))
    async with connect(doc_url(first, file_id, alice_token)) as alice, \
            connect(doc_url(second, file_id, carol_token)) as carol, \
            connect(doc_url(second, file_id, mallory_token)) as mallory:
        for ws in (alice, carol, mallory):
            await sync_fresh(ws)
        seen_by_carol = AsyncAwareness(carol)
        seen_by_mallory = AsyncAwareness(mallory)
        await alice.send(awareness_frame(entry(ALICE_ID, 1, ALICE_STATE)))
        await wait_until(lambda: _true(seen_by_carol.states.get(ALICE_ID) == (1, ALICE_STATE)))
        # Mallory, on the node where Alice's id arrived from the broker, cannot claim it.
        await mallory.send(awareness_frame(entry(ALICE_ID, 2**40, FAKE_STATE)))
        await seen_by_mallory.ask()
        await alice.send(awareness_frame(entry(ALICE_ID, 2, ALICE_STATE)))
        await wait_until(lambda: _true(seen_by_carol.states.get(ALICE_ID) == (2, ALICE_STATE)))
        assert FAKE_STATE not in seen_by_carol.history
        for watcher in (seen_by_carol, seen_by_mallory):
            watcher.task.cancel()


async def _has(agent: NodeAgent, client_id: int) -> bool:
    return str(client_id) in await agent.call("awareness")


async def _gone(agent: NodeAgent, client_id: int) -> bool:
    return str(client_id) not in await agent.call("awareness")


async def _true(value: bool) -> bool:
    return value
