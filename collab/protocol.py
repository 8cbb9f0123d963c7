"""The y-websocket wire protocol as pure functions over bytes (no I/O, no await).

A frame is ``varUint(type) • body``, one message per frame:

- ``0`` Sync: ``varUint(sub) • varBytes(payload)``; sub 0 Step1 (state vector),
  1 Step2 (update), 2 Update.
- ``1`` Awareness: ``varBytes(awareness update)``; the update is
  ``varUint(n) • n * (varUint(client) • varUint(clock) • varString(json state))``.
- ``2`` Auth: ``varUint(0) • varString(reason)`` = permission denied.
- ``3`` QueryAwareness: no body.

``parse_frame`` checks a whole frame (truncated varints, lengths past the end, trailing
bytes, unknown types) and raises ``ProtocolError``; everything else only encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0

# A varUint longer than this cannot be a length or a client id we accept (2**53 in JS).
_MAX_VARUINT_BYTES = 8

EMPTY_UPDATE = b"\x00\x00"


class ProtocolError(ValueError):
    """A malformed frame; the connection that sent it is closed with 4400."""


class Frame(NamedTuple):
    """A parsed frame: ``kind`` (message type), ``sub`` (sync sub-type or -1), ``payload``.

    A named tuple: one is built per received frame, and a frozen dataclass costs more.
    """

    kind: int
    sub: int
    payload: bytes


def read_var_uint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varUint at ``pos`` and the position after it."""
    value = 0
    shift = 0
    end = len(buf)
    for _ in range(_MAX_VARUINT_BYTES):
        if pos >= end:
            raise ProtocolError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ProtocolError("varint too long")


def read_var_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_var_uint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise ProtocolError("length past the end of the frame")
    return buf[pos:end], end


def read_var_string(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_var_bytes(buf, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise ProtocolError("string is not UTF-8") from exc


def write_var_uint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varUint must be >= 0")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


def write_var_string(text: str) -> bytes:
    return write_var_bytes(text.encode("utf-8"))


def parse_frame(frame: bytes) -> Frame:
    """Validate and split one frame. Raises ``ProtocolError``."""
    if len(frame) > 2 and frame[0] == MSG_SYNC and frame[1] <= SYNC_UPDATE:
        # Nearly every frame: a sync message whose type and sub-type are one byte each.
        payload, pos = read_var_bytes(frame, 2)
        if pos != len(frame):
            raise ProtocolError("trailing bytes after the message")
        return Frame(MSG_SYNC, frame[1], payload)
    kind, pos = read_var_uint(frame, 0)
    if kind == MSG_SYNC:
        sub, pos = read_var_uint(frame, pos)
        if sub not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise ProtocolError(f"unknown sync message {sub}")
        payload, pos = read_var_bytes(frame, pos)
    elif kind == MSG_AWARENESS:
        sub = -1
        payload, pos = read_var_bytes(frame, pos)
    elif kind == MSG_QUERY_AWARENESS:
        sub, payload = -1, b""
    elif kind == MSG_AUTH:
        sub, pos = read_var_uint(frame, pos)
        payload, pos = read_var_bytes(frame, pos)
    else:
        raise ProtocolError(f"unknown message type {kind}")
    if pos != len(frame):
        raise ProtocolError("trailing bytes after the message")
    return Frame(kind, sub, payload)


def sync_step1(state_vector: bytes) -> bytes:
    return b"\x00\x00" + write_var_bytes(state_vector)


def sync_step2(update: bytes) -> bytes:
    return b"\x00\x01" + write_var_bytes(update)


def sync_update(update: bytes) -> bytes:
    return b"\x00\x02" + write_var_bytes(update)


def awareness_frame(update: bytes) -> bytes:
    return b"\x01" + write_var_bytes(update)


def query_awareness() -> bytes:
    return b"\x03"


def permission_denied(reason: str) -> bytes:
    return b"\x02\x00" + write_var_string(reason)


def as_update_frame(frame: Frame, raw: bytes) -> bytes:
    """The bytes to relay for an accepted Step2/Update: the Update frame itself, unchanged."""
    if frame.sub == SYNC_UPDATE:
        return raw
    return sync_update(frame.payload)


# --- awareness updates -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # the JSON text as sent; "null" means the client went away

    @property
    def removed(self) -> bool:
        return self.state == "null"


def parse_awareness(update: bytes) -> list[AwarenessEntry]:
    count, pos = read_var_uint(update, 0)
    entries: list[AwarenessEntry] = []
    for _ in range(count):
        client_id, pos = read_var_uint(update, pos)
        clock, pos = read_var_uint(update, pos)
        state, pos = read_var_string(update, pos)
        entries.append(AwarenessEntry(client_id, clock, state))
    if pos != len(update):
        raise ProtocolError("trailing bytes after the awareness update")
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        parts.append(write_var_uint(entry.client_id))
        parts.append(write_var_uint(entry.clock))
        parts.append(write_var_string(entry.state))
    return b"".join(parts)


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """``varUint(n) • n * (varUint(client) • varUint(clock))`` -> {client: clock}."""
    count, pos = read_var_uint(state_vector, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        clock, pos = read_var_uint(state_vector, pos)
        clocks[client] = clock
    if pos != len(state_vector):
        raise ProtocolError("trailing bytes after the state vector")
    return clocks


def lacks(ours: dict[int, int], theirs: dict[int, int]) -> bool:
    """True when ``theirs`` has seen operations that ``ours`` has not."""
    return any(clock > ours.get(client, 0) for client, clock in theirs.items())
