"""An incremental Server-Sent Events parser over raw byte chunks (no I/O).

It decodes with an incremental UTF-8 decoder, so a multi-byte character split across
chunks comes out whole; it splits lines on ``\\r\\n``, ``\\r`` and ``\\n`` (also when a
``\\r\\n`` pair is split across chunks); it keeps no line-length limit other than
``max_line_chars`` (aiohttp's ``readline`` stops at 64 KiB); comments are skipped.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
DEFAULT_MAX_LINE_CHARS = 16 * 1024 * 1024


class SSEError(Exception):
    """The stream is not SSE we can parse (e.g. a line beyond the size limit)."""


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEParser:
    def __init__(self, max_line_chars: int = DEFAULT_MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_line = max_line_chars
        self._partial: list[str] = []
        self._partial_len = 0
        self._skip_lf = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._first_line = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._decoder.decode(chunk))

    def finish(self) -> list[SSEEvent]:
        """End of stream: flush the decoder and the last line; dispatch a pending event."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        if self._partial:
            events.extend(self._line(self._take_partial()))
        if self._data:
            events.extend(self._dispatch())
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        events: list[SSEEvent] = []
        pos = 0
        for match in _LINE_END.finditer(text):
            self._partial.append(text[pos : match.start()])
            events.extend(self._line(self._take_partial()))
            pos = match.end()
        if text.endswith("\r"):
            self._skip_lf = True
        rest = text[pos:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > self._max_line:
                raise SSEError(f"SSE line longer than {self._max_line} characters")
        return events

    def _take_partial(self) -> str:
        line = "".join(self._partial) if len(self._partial) != 1 else self._partial[0]
        self._partial.clear()
        self._partial_len = 0
        return line

    def _line(self, line: str) -> list[SSEEvent]:
        if self._first_line:
            self._first_line = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return []
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return []

    def _dispatch(self) -> list[SSEEvent]:
        if not self._data:
            self._event = ""
            return []
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._id, self._retry)
        self._event = ""
        self._data = []
        return [event]


async def iter_sse(
    chunks: AsyncIterable[bytes], max_line_chars: int = DEFAULT_MAX_LINE_CHARS
) -> AsyncIterator[SSEEvent]:
    """SSE events from an async iterable of raw chunks (e.g. ``resp.content.iter_any()``)."""
    parser = SSEParser(max_line_chars)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.finish():
        yield event
