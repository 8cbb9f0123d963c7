"""The incremental SSE parser over awkward chunkings."""

from __future__ import annotations

from ai.sse import SSEEvent, SSEParser


def parse(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.finish())
    return events


def every_split(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(len(data) + 1)]


def test_multibyte_utf8_split_at_every_byte() -> None:
    data = "data: héllo 你好 🚀\n\n".encode()
    for chunks in every_split(data):
        assert parse(chunks) == [SSEEvent("message", "héllo 你好 🚀")]
    assert parse([bytes([b]) for b in data]) == [SSEEvent("message", "héllo 你好 🚀")]


def test_crlf_cr_and_lf_line_endings_even_when_split() -> None:
    data = b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n"
    expected = [SSEEvent("a", "1"), SSEEvent("b", "2"), SSEEvent("message", "3")]
    for chunks in every_split(data):
        assert parse(chunks) == expected
    assert parse([bytes([b]) for b in data]) == expected


def test_comments_multiline_data_ids_and_unknown_fields() -> None:
    data = b": keep-alive\n\nid: 7\nretry: 100\nfoo: bar\ndata: a\ndata:b\ndata\n\n"
    assert parse([data]) == [SSEEvent("message", "a\nb\n", id="7", retry=100)]


def test_lines_far_longer_than_aiohttp_limit() -> None:
    text = "x" * 300_000 + "é"
    data = f"data: {text}\n\n".encode()
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert parse(chunks) == [SSEEvent("message", text)]


def test_done_marker_with_and_without_space_and_unterminated_last_event() -> None:
    assert parse([b"data:[DONE]\n\n"]) == [SSEEvent("message", "[DONE]")]
    assert parse([b"data: [DONE]"]) == [SSEEvent("message", "[DONE]")]


def test_bom_and_empty_events_are_ignored() -> None:
    assert parse([b"\xef\xbb\xbfdata: x\n\n\n\nevent: y\n\n"]) == [SSEEvent("message", "x")]
