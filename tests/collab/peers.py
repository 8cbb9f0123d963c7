"""An in-process peer for hub tests: a pycrdt client that records what the room sends it.

Not a mock: it is a real (tiny) client. Frames the hub queues are delivered straight
into the client's own ``Doc`` and awareness table, like a socket would.
"""

from __future__ import annotations

import uuid
from typing import Any

from pycrdt import Doc, Text

from collab import protocol


class ClientPeer:
    def __init__(self, user_id: str | None = None, *, read_only: bool = False,
                 workspace_id: uuid.UUID | None = None) -> None:
        self.conn_id = uuid.uuid4().hex[:8]
        self.user_id = user_id or str(uuid.uuid4())
        self.workspace_id = workspace_id or uuid.uuid4()
        self.read_only = read_only
        self.denied_sent = False
        self.awareness_ids: set[int] = set()
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("content", type=Text)
        self.awareness: dict[int, str] = {}
        self.deliver = True

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        self.frames.append(frame)
        if self.deliver:
            self.consume(frame)

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason

    def consume(self, raw: bytes) -> None:
        frame = protocol.parse_frame(raw)
        if frame.kind == protocol.MSG_SYNC and frame.sub in (protocol.SYNC_STEP2,
                                                             protocol.SYNC_UPDATE):
            self.doc.apply_update(frame.payload)
        elif frame.kind == protocol.MSG_AWARENESS:
            for entry in protocol.parse_awareness(frame.payload):
                self.awareness[entry.client_id] = entry.state

    def edit(self, index: int, insert: str = "", delete: int = 0) -> bytes:
        """Make a local edit; the update frame to send to the server."""
        before = self.doc.get_state()
        with self.doc.transaction():
            if delete:
                del self.text[index:index + delete]
            if insert:
                self.text.insert(index, insert)
        return protocol.sync_update(self.doc.get_update(before))

    def step1(self) -> bytes:
        return protocol.sync_step1(self.doc.get_state())

    def value(self) -> str:
        return str(self.text)
