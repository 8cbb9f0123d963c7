"""The project channel's JSON messages: parsing and validating what clients send.

Pure functions, no I/O. Every frame is a JSON object with ``type``; a bad frame yields a
``ProtocolError`` whose ``code`` and ``message`` the hub sends back as
``{"type": "error", "code", "message"}`` (the socket stays open).

Client -> server:
- ``{"type": "editor_state", "open_files": [{"file_id", "cursor_position",
  "scroll_position"}], "active_file_id", "layout_state"}``: the user's editor session,
  saved (debounced) to ``editor_sessions`` and restored in the next ``hello``;
  ``active_file_id`` is also the file shown next to the user in presence.
- ``{"type": "open_file", "file_id": uuid | null}``: presence only.
- ``{"type": "ping"}``: answered with ``{"type": "pong"}``.

Server -> client:
- ``{"type": "hello", "connection_id", "instance_id", "project_id", "user_id", "role",
  "presence": [member...], "editor_state": {"type": "editor_state", ...} | null}`` first;
  a member is ``{connection_id, user_id, role, email, name, file_id, since}`` (one per socket).
- ``presence.join`` / ``presence.update`` ``{"member"}``, ``presence.leave``
  ``{"connection_id", "user_id"}``: from every node of the cluster.
- project events as published by REST and execution (``file.created``, ``file.updated``,
  ``file.renamed``, ``file.moved``, ``file.deleted``, ``file.restored`` with ``file``;
  ``execution.*``), unchanged.
- ``{"type": "error", "code", "message"}`` for a bad frame (codes: ``invalid_json``,
  ``invalid_message``, ``unknown_type``, ``too_large``); the socket stays open.
- Closes: 4401 no/bad token, 4403 not a member (or access revoked later), 4404 no such
  project, 1013 slow consumer (try again later), 1001 server shutting down (reconnect elsewhere).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_OPEN_FILES = 200
MAX_STATE_JSON_BYTES = 32 * 1024


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OpenFile:
    file_id: uuid.UUID
    cursor_position: Any = None
    scroll_position: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file_id": str(self.file_id),
            "cursor_position": self.cursor_position,
            "scroll_position": self.scroll_position,
        }


@dataclass(frozen=True)
class EditorState:
    open_files: tuple[OpenFile, ...] = ()
    active_file_id: uuid.UUID | None = None
    layout_state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "editor_state",
            "open_files": [f.to_json() for f in self.open_files],
            "active_file_id": str(self.active_file_id) if self.active_file_id else None,
            "layout_state": self.layout_state,
        }


@dataclass(frozen=True)
class OpenFileMessage:
    file_id: uuid.UUID | None


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = EditorState | OpenFileMessage | Ping


def error_message(code: str, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}


def _uuid(value: Any, what: str, *, nullable: bool = False) -> uuid.UUID | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ProtocolError("invalid_message", f"{what} must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ProtocolError("invalid_message", f"{what} must be a UUID string") from exc


def _position(value: Any, what: str) -> Any:
    """Positions are client-defined (a number, or {line, column} / {top, left}): small JSON."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, dict) and len(value) <= 8 and all(
        isinstance(k, str) and (isinstance(v, int | float) and not isinstance(v, bool))
        for k, v in value.items()
    ):
        return value
    raise ProtocolError("invalid_message", f"{what} must be a number or an object of numbers")


def parse_editor_state(body: dict[str, Any]) -> EditorState:
    open_files_raw = body.get("open_files", [])
    if not isinstance(open_files_raw, list):
        raise ProtocolError("invalid_message", "open_files must be a list")
    if len(open_files_raw) > MAX_OPEN_FILES:
        raise ProtocolError("invalid_message", f"at most {MAX_OPEN_FILES} open files")
    open_files: list[OpenFile] = []
    seen: set[uuid.UUID] = set()
    for item in open_files_raw:
        if not isinstance(item, dict):
            raise ProtocolError("invalid_message", "each open file must be an object")
        file_id = _uuid(item.get("file_id"), "open_files[].file_id")
        assert file_id is not None
        if file_id in seen:
            continue
        seen.add(file_id)
        open_files.append(
            OpenFile(
                file_id,
                _position(item.get("cursor_position"), "cursor_position"),
                _position(item.get("scroll_position"), "scroll_position"),
            )
        )
    active = _uuid(body.get("active_file_id"), "active_file_id", nullable=True)
    layout = body.get("layout_state", {})
    if layout is None:
        layout = {}
    if not isinstance(layout, dict):
        raise ProtocolError("invalid_message", "layout_state must be an object")
    if len(json.dumps(layout)) > MAX_STATE_JSON_BYTES:
        raise ProtocolError("too_large", "layout_state is too large")
    return EditorState(tuple(open_files), active, layout)


def parse_client_message(text: str | bytes, max_bytes: int) -> ClientMessage:
    if isinstance(text, bytes):
        raise ProtocolError("invalid_message", "the project channel takes JSON text frames")
    if len(text) > max_bytes:
        raise ProtocolError("too_large", f"message over {max_bytes} bytes")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("invalid_json", "message is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError("invalid_message", "message must be a JSON object")
    kind = body.get("type")
    if kind == "editor_state":
        return parse_editor_state(body)
    if kind == "open_file":
        return OpenFileMessage(_uuid(body.get("file_id"), "file_id", nullable=True))
    if kind == "ping":
        return Ping()
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "message needs a string 'type'")
    raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")
