"""An edit streamed into a shared text by a peer of its own: the assistant's pen.

``StreamEdit`` holds its own replica of the document (a pycrdt ``Doc`` with its own client
id), kept current with ``catch_up(update)``, and turns "replace this range with text that
arrives piece by piece" into small CRDT updates (bytes out, no I/O: the caller applies them
to the room and fans them out like any client's):

- ``begin()``: one transaction deletes the range's characters as they are now and writes
  the edit's marker in the ``assistant`` map (``{edit_id: {"client", "state"}}``), so this
  first update too carries the edit's client id (a browser's ``Y.UndoManager`` capturing
  "transactions that advanced this client" captures the deletion as well).
- ``write(piece)``: inserts at the edit's cursor, which sits right after the edit's last
  character (where the range was, before the first piece) and follows every change others
  make. So each piece follows the previous one whatever humans did meanwhile.
- ``rollback()``: undoes every transaction of the edit (pycrdt's ``UndoManager`` tracking
  the edit's origin): its text is deleted and the range's original characters come back;
  nothing anyone else wrote is touched.

Guarantees under concurrent human edits (property-tested in tests/collab/test_stream_edit.py):
human insertions are new items that the edit never deletes (it deletes only in ``begin``,
only the characters the range held then, and in ``rollback`` only its own), so no keystroke
before, inside or after the range is lost; every replica converges (plain CRDT); the edit's
text keeps its order and stays between the text left of the range and the text right of it;
a human run typed inside the edit's text stays contiguous (YATA never interleaves runs with
different origins).

Offsets: the range counts UTF-16 code units, as Yjs and CodeMirror do; pycrdt's ``Text``
takes UTF-8 bytes, converted here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map, Text, TextEvent, UndoManager

from collab.protocol import decode_state_vector

TEXT_NAME = "content"
MARKERS = "assistant"
ORIGIN_PREFIX = "ai-edit:"


def new_client_id() -> int:
    """A random client id as Yjs makes them (uint32): the edit writes as its own peer."""
    return secrets.randbits(32)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def utf16_to_byte(text: str, units: int) -> int:
    """The UTF-8 byte offset of UTF-16 offset ``units`` in ``text`` (clamped; an offset
    inside a surrogate pair counts as the whole character)."""
    if units <= 0:
        return 0
    prefix = text.encode("utf-16-le")[: units * 2].decode("utf-16-le", errors="ignore")
    return len(prefix.encode("utf-8"))


class StreamEdit:
    def __init__(self, state: bytes, start: int, end: int, *, edit_id: str,
                 client_id: int | None = None) -> None:
        """``state``: the document (an update holding everything known); ``start``/``end``:
        the range in UTF-16 units of the text as it is in ``state``. ``begin()`` deletes it:
        call it before anything else is applied."""
        self.edit_id = edit_id
        self.origin = ORIGIN_PREFIX + edit_id
        self.doc: Doc[Any] = Doc(client_id=client_id if client_id is not None
                                 else new_client_id())
        self.text = self.doc.get(TEXT_NAME, type=Text)
        self.markers = self.doc.get(MARKERS, type=Map)
        self.doc.apply_update(state)
        current = str(self.text)
        size = utf16_length(current)
        first, last = sorted((min(max(0, start), size), min(max(0, end), size)))
        self._range = (utf16_to_byte(current, first), utf16_to_byte(current, last))
        # The cursor, a byte offset kept current through every change's delta (pycrdt's
        # relative positions mix bytes and UTF-16 units on multi-byte text: not used).
        self._cursor: int | None = None
        self._own = False
        self._subscription = self.text.observe(self._moved)
        self.undo = UndoManager(scopes=[self.text], capture_timeout_millis=2**31 - 1)
        self.undo.include_origin(self.origin)
        self.original = ""
        self.written: list[str] = []

    @property
    def client_id(self) -> int:
        return int(self.doc.client_id)

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def catch_up(self, update: bytes) -> None:
        """Apply what others wrote (an update or a diff from the room)."""
        self.doc.apply_update(update)

    def _moved(self, event: TextEvent) -> None:
        """Follow others' changes: inserts before the cursor (or deletes) move it; an
        insert exactly at it stays on its right (the cursor sits after the edit's last
        character, so whatever arrives there came after it)."""
        if self._own or self._cursor is None:
            return
        cursor, old, shift = self._cursor, 0, 0
        for op in event.delta:  # type: ignore[attr-defined]
            if "retain" in op:
                old += int(op["retain"])
            elif "insert" in op:
                inserted = op["insert"]
                size = len(inserted.encode("utf-8")) if isinstance(inserted, str) else 1
                if old < cursor:
                    shift += size
            elif "delete" in op:
                gone = int(op["delete"])
                if old < cursor:
                    shift -= min(gone, cursor - old)
                old += gone
        self._cursor = cursor + shift

    def _transact(self, change: Callable[[], None], origin: str | None = None) -> bytes:
        before = self.doc.get_state()
        self._own = True
        try:
            with self.doc.transaction(origin=origin or self.origin):
                change()
        finally:
            self._own = False
        return self.doc.get_update(before)

    def begin(self) -> bytes:
        """Delete the range; the update to fan out."""
        first, last = self._range

        def change() -> None:
            self.original = str(self.text).encode("utf-8")[first:last].decode("utf-8")
            if last > first:
                del self.text[first:last]
            self.markers[self.edit_id] = {"client": self.client_id, "state": "writing"}

        update = self._transact(change)
        self._cursor = first
        return update

    def write(self, piece: str) -> bytes:
        """Insert ``piece`` after what the edit wrote so far; the update to fan out."""
        assert self._cursor is not None, "begin() first"
        if not piece:
            return b""
        at = self._cursor
        update = self._transact(lambda: self.text.insert(at, piece))
        self._cursor = at + len(piece.encode("utf-8"))
        self.written.append(piece)
        return update

    def finish(self, state: str) -> bytes:
        """Record the edit's end (``done``, ``kept``, ``rolled_back``) in its marker."""
        return self._transact(
            lambda: self.markers.__setitem__(self.edit_id,
                                             {"client": self.client_id, "state": state}),
            origin=f"{self.origin}:end",
        )

    def rollback(self) -> bytes:
        """Undo the whole edit (its text out, the original back); the update to fan out."""

        def change() -> None:
            while self.undo.can_undo():
                self.undo.undo()

        before = self.doc.get_state()
        self._own = True
        try:
            change()
        finally:
            self._own = False
        return self.doc.get_update(before)

    def cursor(self) -> dict[str, Any] | None:
        """The cursor as a Yjs relative position (JSON) for the awareness state: after the
        edit's last character (None before the first piece)."""
        if not self.written:
            return None
        clock = decode_state_vector(self.doc.get_state()).get(self.client_id, 0)
        return {"item": {"client": self.client_id, "clock": clock - 1}, "assoc": -1}

    def cursor_index(self) -> int:
        """The cursor's offset (UTF-16 units) in the current text."""
        at = self._cursor if self._cursor is not None else self._range[0]
        return utf16_length(str(self.text).encode("utf-8")[:at].decode("utf-8", "ignore"))

    def read(self) -> str:
        return str(self.text)

    def close(self) -> None:
        self.text.unobserve(self._subscription)
