"""Byte tables for the y-websocket protocol functions (collab/protocol.py)."""

from __future__ import annotations

import pytest

from collab import protocol
from collab.protocol import AwarenessEntry, Frame, ProtocolError

VARUINTS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARUINTS)
def test_var_uint_round_trip(value: int, encoded: bytes) -> None:
    assert protocol.write_var_uint(value) == encoded
    assert protocol.read_var_uint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x80\x80\x80"])
def test_truncated_var_uint(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        protocol.read_var_uint(data, 0)


def test_overlong_var_uint() -> None:
    with pytest.raises(ProtocolError, match="too long"):
        protocol.read_var_uint(b"\xff" * 9 + b"\x01", 0)


ENCODERS = [
    (protocol.sync_step1(b"\x00"), b"\x00\x00\x01\x00"),
    (protocol.sync_step2(b"\x00\x00"), b"\x00\x01\x02\x00\x00"),
    (protocol.sync_update(b"abc"), b"\x00\x02\x03abc"),
    (protocol.awareness_frame(b"\x00"), b"\x01\x01\x00"),
    (protocol.query_awareness(), b"\x03"),
    (protocol.permission_denied("no"), b"\x02\x00\x02no"),
]


@pytest.mark.parametrize(("frame", "expected"), ENCODERS)
def test_encoders(frame: bytes, expected: bytes) -> None:
    assert frame == expected


PARSED = [
    (b"\x00\x00\x01\x00", Frame(0, 0, b"\x00")),
    (b"\x00\x01\x02\x00\x00", Frame(0, 1, b"\x00\x00")),
    (b"\x00\x02\x03abc", Frame(0, 2, b"abc")),
    (b"\x01\x01\x00", Frame(1, -1, b"\x00")),
    (b"\x02\x00\x02no", Frame(2, 0, b"no")),
    (b"\x03", Frame(3, -1, b"")),
    (b"\x00\x02" + b"\x80\x01" + b"x" * 128, Frame(0, 2, b"x" * 128)),
]


@pytest.mark.parametrize(("raw", "frame"), PARSED)
def test_parse_frame(raw: bytes, frame: Frame) -> None:
    assert protocol.parse_frame(raw) == frame


BAD_FRAMES = [
    (b"", "truncated"),
    (b"\x80", "truncated"),
    (b"\x00", "truncated"),
    (b"\x00\x02", "truncated"),
    (b"\x00\x02\x05ab", "past the end"),
    (b"\x00\x02\x80", "truncated"),
    (b"\x00\x03\x00", "unknown sync"),
    (b"\x07", "unknown message type"),
    (b"\x80\x01", "unknown message type"),
    (b"\x03\x00", "trailing"),
    (b"\x00\x02\x01a\x00", "trailing"),
    (b"\x01\x05\x00", "past the end"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_FRAMES)
def test_parse_frame_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.parse_frame(raw)


def test_update_frame_is_relayed_unchanged() -> None:
    raw = protocol.sync_update(b"\x01\x02")
    assert protocol.as_update_frame(protocol.parse_frame(raw), raw) is raw
    step2 = protocol.sync_step2(b"\x01\x02")
    assert protocol.as_update_frame(protocol.parse_frame(step2), step2) == raw


AWARENESS = [
    ([], b"\x00"),
    ([AwarenessEntry(1, 2, "{}")], b"\x01\x01\x02\x02{}"),
    (
        [AwarenessEntry(300, 1, "null"), AwarenessEntry(5, 0, '{"a":1}')],
        b"\x02\xac\x02\x01\x04null\x05\x00\x07{\"a\":1}",
    ),
]


@pytest.mark.parametrize(("entries", "encoded"), AWARENESS)
def test_awareness_round_trip(entries: list[AwarenessEntry], encoded: bytes) -> None:
    assert protocol.encode_awareness(entries) == encoded
    assert protocol.parse_awareness(encoded) == entries


@pytest.mark.parametrize(
    "bad", [b"", b"\x01", b"\x01\x01\x02\x05{}", b"\x00\x00", b"\x01\x01\x01\x01\xff"]
)
def test_awareness_rejects(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.parse_awareness(bad)


def test_state_vector_decoding() -> None:
    assert protocol.decode_state_vector(b"\x00") == {}
    assert protocol.decode_state_vector(b"\x02\x01\x05\xac\x02\x07") == {1: 5, 300: 7}
    assert protocol.lacks({1: 5}, {1: 6})
    assert not protocol.lacks({1: 5, 2: 1}, {1: 5})
    with pytest.raises(ProtocolError):
        protocol.decode_state_vector(b"\x01\x01")
