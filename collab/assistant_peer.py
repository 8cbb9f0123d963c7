"""The assistant as a peer of a document room, speaking the same frames as a browser.

The document hub cannot tell it from a socket: it ``join``s (the hub sends it Step1 and the
known awareness states), asks for the document with its own Step1 (the hub answers Step2),
then every update anyone makes reaches it through ``send`` and is applied to its replica
(``StreamEdit.catch_up``). What it writes goes back through ``hub.receive`` as Sync Update
and Awareness frames, so the hub applies, relays, logs, publishes to other nodes and checks
awareness ownership exactly as for a client. No I/O here; ``send`` never blocks.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pycrdt import Doc, Text, merge_updates

from collab import protocol
from collab.stream_edit import TEXT_NAME, StreamEdit, new_client_id

EMPTY_STATE_VECTOR = b"\x00"  # varUint(0): knows nothing
ASSISTANT_NAME = "Assistant"
ASSISTANT_COLOR = "#8e44ad"
ASSISTANT_COLOR_LIGHT = "#8e44ad33"


class AssistantPeer:
    """One edit's connection to a room (the ``collab.room.Peer`` protocol)."""

    def __init__(self, edit_id: str, user_id: str, workspace_id: uuid.UUID) -> None:
        self.edit_id = edit_id
        self.conn_id = f"assistant-{edit_id}"
        self.user_id = user_id  # the person who asked: logged as the editor, role-checked
        self.workspace_id = workspace_id
        self.read_only = False
        self.denied_sent = False
        self.awareness_ids: set[int] = set()
        self.client_id = new_client_id()
        self.edit: StreamEdit | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._state: list[bytes] = []
        self._awareness_clock = 0

    # -- the Peer protocol (called by the hub) ---------------------------------------------

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, frame: bytes) -> None:
        try:
            parsed = protocol.parse_frame(frame)
        except protocol.ProtocolError:
            return
        if parsed.kind != protocol.MSG_SYNC or parsed.sub == protocol.SYNC_STEP1:
            return  # awareness of others and the hub's Step1 mean nothing to the edit
        if self.edit is not None:
            self.edit.catch_up(parsed.payload)
        else:
            self._state.append(parsed.payload)

    send_bytes = send

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    # -- what the edit sends -----------------------------------------------------------------

    def request_state(self) -> bytes:
        """A Step1 with an empty state vector: the hub answers with the whole document."""
        return protocol.sync_step1(EMPTY_STATE_VECTOR)

    def start(self, start: int, end: int) -> bytes:
        """Open the edit on the document received so far; the Update frame deleting the
        range (``start``/``end`` in UTF-16 units)."""
        assert self.edit is None and self._state, "request_state first"
        state = self._state[0] if len(self._state) == 1 else merge_updates(*self._state)
        self.edit = StreamEdit(state, start, end, edit_id=self.edit_id,
                               client_id=self.client_id)
        self._state.clear()
        return protocol.sync_update(self.edit.begin())

    def received_text(self) -> str:
        """The text of the document received so far (before ``start``)."""
        doc: Doc[Any] = Doc()
        text = doc.get(TEXT_NAME, type=Text)
        for update in self._state:
            doc.apply_update(update)
        return str(text)

    def write(self, piece: str) -> bytes | None:
        assert self.edit is not None
        update = self.edit.write(piece)
        return protocol.sync_update(update) if update else None

    def finish(self, state: str) -> bytes:
        assert self.edit is not None
        return protocol.sync_update(self.edit.finish(state))

    def rollback(self) -> bytes:
        assert self.edit is not None
        return protocol.sync_update(self.edit.rollback())

    def awareness(self, state: dict[str, Any] | None) -> bytes:
        """An Awareness frame for the edit's own client id (``None``: gone)."""
        self._awareness_clock += 1
        text = "null" if state is None else json.dumps(state, separators=(",", ":"))
        entry = protocol.AwarenessEntry(self.client_id, self._awareness_clock, text)
        return protocol.awareness_frame(protocol.encode_awareness([entry]))

    def presence(self, user_name: str | None) -> dict[str, Any]:
        """The awareness state editors draw: y-codemirror's ``user`` and ``cursor`` fields."""
        state: dict[str, Any] = {
            "user": {"name": ASSISTANT_NAME, "color": ASSISTANT_COLOR,
                     "colorLight": ASSISTANT_COLOR_LIGHT, "assistant": True,
                     "edit_id": self.edit_id, "for": user_name},
        }
        cursor = self.edit.cursor() if self.edit is not None else None
        if cursor is not None:
            state["cursor"] = {"anchor": cursor, "head": cursor}
        return state
