"""One loaded document: a pycrdt ``Doc`` (text = ``Y.Text`` "content"), its awareness, its peers.

A room does no I/O; the hub (collab/hub.py) feeds it frames and does the logging,
publishing and persistence. Peers are whatever the transport wraps a socket in: they
only need ``send(frame)`` (non-blocking, bounded) and ``close(code, reason)``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from pycrdt import Doc, Text, merge_updates

from collab import protocol
from collab.awareness import AwarenessStates
from collab.store import StoredDocument

TEXT_NAME = "content"


class Peer(Protocol):
    """One socket on one document, as the room sees it."""

    conn_id: str
    user_id: str
    workspace_id: uuid.UUID
    read_only: bool
    denied_sent: bool
    awareness_ids: set[int]

    @property
    def closed(self) -> bool: ...

    def send(self, frame: bytes) -> None:
        """Queue a frame; a peer whose queue is full closes itself (1013)."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (idempotent, returns at once)."""
        ...


def new_doc() -> tuple[Doc[Any], Text]:
    doc: Doc[Any] = Doc()
    return doc, doc.get(TEXT_NAME, type=Text)


def apply_all(doc: Doc[Any], pieces: list[bytes]) -> None:
    """Apply stored pieces (state + log rows) as one merged update.

    Rows from several processes are not in causal order, and yrs (pycrdt 0.14) can leave
    structs pending for good when dependencies arrive in some orders (seen in
    tests/collab/test_convergence.py); merging first integrates everything at once.
    """
    pieces = [p for p in pieces if p]
    if not pieces:
        return
    doc.apply_update(merge_tree(pieces))


MERGE_FAN_IN = 256


def merge_tree(pieces: list[bytes]) -> bytes:
    """``merge_updates`` of all pieces, in rounds of at most MERGE_FAN_IN at a time.

    One flat call is quadratic in the number of pieces (20k keystroke updates: 2.4 s,
    100k: tens of seconds holding the GIL); merging is associative, so rounds of
    bounded fan-in give the same update in near-linear time (20k: 47 ms).
    """
    while len(pieces) > 1:
        pieces = [
            merge_updates(*chunk) if len(chunk) > 1 else chunk[0]
            for chunk in (pieces[i : i + MERGE_FAN_IN] for i in range(0, len(pieces), MERGE_FAN_IN))
        ]
    return pieces[0]


def build_from_text(content: str) -> tuple[bytes, bytes]:
    """A first CRDT state for a file that so far only has ``files.content``."""
    doc, text = new_doc()
    if content:
        with doc.transaction(origin="init"):
            text += content
    return doc.get_update(), doc.get_state()


class Room:
    def __init__(self, file_id: uuid.UUID) -> None:
        self.file_id = file_id
        self.channel = f"doc:{file_id}"
        self.doc, self.text = new_doc()
        self.peers: list[Peer] = []
        self.awareness = AwarenessStates()
        self.size = 0  # bytes of stored state + updates applied since: the document-size limit
        now = time.monotonic()
        self.idle_since: float | None = now
        # persistence bookkeeping (hub-owned)
        self.log_since: float | None = None  # first update logged here since the last compaction
        self.log_seq = 0
        self.unflushed = 0  # of its updates, how many are queued for the log or being written
        self.dirty = False  # memory may hold changes the stored state lacks
        self.last_editor: str | None = None
        self.changed_since_version = False
        self.version_checked_at = now
        self.failures = 0
        self.retry_at = 0.0
        self.unloading = False
        # What the store holds as far as this process knows: the state it loaded or last
        # wrote (and that state's generation), and the log rows it loaded or appended since,
        # (id, update) in id order. Compaction merges these instead of reading them back.
        self.stored_state: bytes | None = None
        self.stored_generation: int | None = None
        self.own_rows: list[tuple[int, bytes]] = []

    def load(self, stored: StoredDocument) -> None:
        apply_all(self.doc, [stored.state or b"", *stored.updates])
        self.size = len(stored.state or b"") + sum(len(u) for u in stored.updates)
        self.stored_state = stored.state
        self.stored_generation = stored.generation if stored.state is not None else None
        if len(stored.update_ids) == len(stored.updates):
            self.own_rows = list(zip(stored.update_ids, stored.updates, strict=True))
        else:  # a store that does not say which rows it read: compaction reads them back
            self.stored_generation = None

    def apply(self, update: bytes) -> None:
        """Apply an update; a malformed one raises ``ProtocolError`` and changes nothing."""
        if update == protocol.EMPTY_UPDATE:
            return
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            raise protocol.ProtocolError(f"bad update: {exc}") from exc
        self.size += len(update)
        self.dirty = True

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def diff(self, state_vector: bytes) -> bytes:
        """What a holder of ``state_vector`` lacks (raises ``ProtocolError`` on garbage)."""
        try:
            return self.doc.get_update(state_vector)
        except ValueError as exc:
            raise protocol.ProtocolError(f"bad state vector: {exc}") from exc

    def broadcast(self, frame: bytes, exclude: Peer | None = None) -> int:
        """Queue the same bytes to every peer but ``exclude``; the number of deliveries."""
        sent = 0
        for peer in self.peers:
            if peer is not exclude:
                peer.send(frame)
                sent += 1
        return sent

    def read_text(self) -> str:
        return str(self.text)
