"""Property: random concurrent edit traces converge, through the hub, to one Doc's text."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, merge_updates

from broker.local import LocalBroker
from collab import protocol
from collab.config import CollabConfig
from collab.hub import DocumentHub
from collab.store import MemoryStore
from tests.collab.peers import ClientPeer

CLIENTS = 3

op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, CLIENTS - 1), st.integers(0, 50),
              st.text(alphabet="abcxyz\n", min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, CLIENTS - 1), st.integers(0, 50),
              st.integers(1, 3)),
    st.tuples(st.just("send"), st.integers(0, CLIENTS - 1), st.integers(0, 3), st.just("")),
)


async def run_trace(trace: list[tuple[str, int, int, object]]) -> None:
    store = MemoryStore()
    file_id = uuid.uuid4()
    store.add_file(file_id, "seed text\n")
    broker = LocalBroker("solo")
    hub = DocumentHub(store, broker, CollabConfig())
    clients = [ClientPeer() for _ in range(CLIENTS)]
    room = None
    for client in clients:
        room = await hub.join(file_id, client)
        hub.receive(room, client, client.step1())
    assert room is not None
    outboxes: list[list[bytes]] = [[] for _ in clients]
    sent: list[bytes] = []
    for kind, who, position, arg in trace:
        client = clients[who]
        length = len(client.value())
        if kind == "insert":
            assert isinstance(arg, str)
            outboxes[who].append(client.edit(min(position, length), insert=arg))
        elif kind == "delete" and length:
            index = min(position, length - 1)
            assert isinstance(arg, int)
            outboxes[who].append(client.edit(index, delete=min(arg, length - index)))
        elif kind == "send":
            # Deliver a few of this client's queued frames (others stay in flight).
            for frame in outboxes[who][: position + 1]:
                hub.receive(room, client, frame)
                sent.append(frame)
            del outboxes[who][: position + 1]
    for who, client in enumerate(clients):
        for frame in outboxes[who]:
            hub.receive(room, client, frame)
            sent.append(frame)
    texts = {client.value() for client in clients}
    assert len(texts) == 1, texts
    reference: Doc[object] = Doc()
    stored = await store.load(file_id)
    assert stored.state is not None
    reference.apply_update(stored.state)
    for frame in sent:
        reference.apply_update(protocol.parse_frame(frame).payload)
    final = texts.pop()
    assert str(reference.get("content", type=Text)) == final == room.read_text()
    # In any order, merged first (see collab.room.apply_all), the result is the same.
    shuffled: Doc[object] = Doc()
    shuffled.apply_update(
        merge_updates(stored.state, *(protocol.parse_frame(f).payload for f in reversed(sent)))
    )
    assert str(shuffled.get("content", type=Text)) == final
    assert not any(client.closed for client in clients)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=40))
def test_random_concurrent_traces_converge(trace: list[tuple[str, int, int, object]]) -> None:
    asyncio.run(run_trace(trace))
