"""One loaded document: a pycrdt ``Doc`` (text = ``Y.Text`` "content"), its awareness, its peers.

A room does no I/O; the hub (collab/hub.py) feeds it frames, the update log
(collab/update_log.py), the compactor (collab/compactor.py) and the broker relay
(collab/relay.py) do the logging, persistence and publishing. Peers are whatever the
transport wraps a socket in (server/ws/docs.py: a socket outbox): they only need
``send(frame)`` (non-blocking, bounded) and ``close(code, reason)``.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from collab import protocol
from collab.awareness import AwarenessStates
from collab.compactor import StoredState
from collab.merge import apply_all, new_doc
from collab.store import StoredDocument
from collab.update_log import LogState


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


class Room:
    """A loaded document. Its persistence bookkeeping is in two parts, each changed by the
    module that owns it: ``log`` by the update-log writer (collab/update_log.py), ``stored``
    by the compactor (collab/compactor.py)."""

    def __init__(self, file_id: uuid.UUID) -> None:
        self.file_id = file_id
        self.channel = f"doc:{file_id}"
        self.doc, self.text = new_doc()
        self.peers: list[Peer] = []
        self.awareness = AwarenessStates()
        self.size = 0  # bytes of stored state + updates applied since: the document-size limit
        self.version = 0  # +1 per change of the document: full_sync.py's shared copy, gap repair
        self.idle_since: float | None = time.monotonic()
        self.log = LogState()
        self.stored = StoredState()

    def load(self, stored: StoredDocument) -> None:
        apply_all(self.doc, [stored.state or b"", *stored.updates])
        self.size = len(stored.state or b"") + sum(len(u) for u in stored.updates)
        self.stored.loaded(stored)

    def apply(self, update: bytes) -> None:
        """Apply an update; a malformed one raises ``ProtocolError`` and changes nothing."""
        if update == protocol.EMPTY_UPDATE:
            return
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            raise protocol.ProtocolError(f"bad update: {exc}") from exc
        self.size += len(update)
        self.version += 1

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
