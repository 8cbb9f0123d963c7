"""CPU of the document hub's hot path per delivered update, in one process, no sockets.

    .venv/bin/python bench/hub_hot_path.py [--source DIR] [--updates N] [--peers P] [--awareness]

One room, P peers that only count the bytes they are handed, N typed updates (one
character each, made by a pycrdt client beforehand) fed to ``DocumentHub.receive`` as a
client's frames: parse, apply, relay to P-1 peers, queue for the log, publish to the
(in-process) broker. The figure is process CPU time (``time.process_time``) per delivered
update, which a busy machine disturbs far less than wall-clock latency. ``--awareness``: N
awareness renewals instead (one client's state with a new clock each time), each followed
by the echo every other stock client sends back (the bytes it was sent); the figure is CPU
per frame received (renewals and echoes). ``--source`` runs
another checkout (e.g. a git worktree of main) for a before/after: run both alternately.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from typing import Any


class CountingPeer:
    """A room peer that takes frames and counts them (what a socket's outbox would write)."""

    def __init__(self, workspace_id: uuid.UUID) -> None:
        self.conn_id = uuid.uuid4().hex[:12]
        self.user_id = str(uuid.uuid4())
        self.workspace_id = workspace_id
        self.read_only = False
        self.denied_sent = False
        self.awareness_ids: set[int] = set()
        self.frames = 0
        self.bytes = 0

    @property
    def closed(self) -> bool:
        return False

    def send(self, frame: bytes) -> None:
        self.frames += 1
        self.bytes += len(frame)

    def close(self, code: int, reason: str) -> None:
        raise AssertionError(f"peer closed: {code} {reason}")


def typed_updates(count: int) -> list[bytes]:
    from pycrdt import Doc, Text

    from collab import protocol

    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    frames = []
    for i in range(count):
        before = doc.get_state()
        text.insert(len(text) if i % 7 else 0, "abcdefg"[i % 7])
        frames.append(protocol.sync_update(doc.get_update(before)))
    return frames


def renewals(count: int) -> list[bytes]:
    from collab import protocol

    return [
        protocol.awareness_frame(protocol.encode_awareness(
            [protocol.AwarenessEntry(4242, clock, '{"user":{"name":"bench","color":"#30bced"}'
                                     f',"cursor":{{"anchor":{clock},"head":{clock}}}}}')]
        ))
        for clock in range(1, count + 1)
    ]


async def measure(updates: int, peers: int, awareness: bool = False) -> dict[str, Any]:
    from collab.config import CollabConfig
    from collab.hub import DocumentHub
    from collab.store import MemoryStore

    try:
        from broker.local import LocalBroker
    except ImportError:  # before the broker package (collab/broker.py)
        from collab.broker import LocalBroker  # type: ignore[no-redef]

    frames = renewals(updates) if awareness else typed_updates(updates)
    store = MemoryStore()
    file_id = uuid.uuid4()
    store.add_file(file_id, "")
    hub = DocumentHub(store, LocalBroker("bench"), CollabConfig())
    workspace = uuid.uuid4()
    room_peers = [CountingPeer(workspace) for _ in range(peers)]
    room = None
    for peer in room_peers:
        room = await hub.join(file_id, peer)
    assert room is not None
    sender = room_peers[0]
    receive = hub.receive
    gc.collect()
    gc.disable()
    if awareness:
        others = room_peers[1:]
        started = time.process_time()
        for frame in frames:
            receive(room, sender, frame)
            for peer in others:  # each echoes what it was sent
                receive(room, peer, frame)
        cpu = time.process_time() - started
        gc.enable()
        received = len(frames) * peers
        return {"renewals": updates, "peers": peers, "frames_received": received,
                "cpu_us_per_frame_received": 1e6 * cpu / received,
                "relayed": sum(p.frames for p in others)}
    started = time.process_time()
    for frame in frames:
        receive(room, sender, frame)
    cpu = time.process_time() - started
    gc.enable()
    delivered = sum(p.frames for p in room_peers[1:])
    await hub.flush()
    return {"updates": updates, "peers": peers, "delivered": delivered,
            "cpu_us_per_delivered": 1e6 * cpu / delivered, "cpu_us_per_update": 1e6 * cpu / updates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--source", help="checkout to import the hub from")
    parser.add_argument("--updates", type=int, default=20000)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--awareness", action="store_true",
                        help="awareness renewals and their echoes instead of updates")
    args = parser.parse_args()
    if args.source:
        sys.path.insert(0, args.source)
    result = asyncio.run(measure(args.updates, args.peers, args.awareness))
    result["source"] = args.source or "."
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
