"""CPU of the document hub's hot path per delivered update, in one process, no sockets.

    .venv/bin/python bench/hub_hot_path.py [--source DIR] [--updates N] [--peers P]

One room, P peers that only count the bytes they are handed, N typed updates (one
character each, made by a pycrdt client beforehand) fed to ``DocumentHub.receive`` as a
client's frames: parse, apply, relay to P-1 peers, queue for the log, publish to the
(in-process) broker. The figure is process CPU time (``time.process_time``) per delivered
update, which a busy machine disturbs far less than wall-clock latency. ``--source`` runs
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


async def measure(updates: int, peers: int) -> dict[str, Any]:
    from collab.config import CollabConfig
    from collab.hub import DocumentHub
    from collab.store import MemoryStore

    try:
        from broker.local import LocalBroker
    except ImportError:  # before the broker package (collab/broker.py)
        from collab.broker import LocalBroker  # type: ignore[no-redef]

    frames = typed_updates(updates)
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
    args = parser.parse_args()
    if args.source:
        sys.path.insert(0, args.source)
    result = asyncio.run(measure(args.updates, args.peers))
    result["source"] = args.source or "."
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
