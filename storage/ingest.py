"""Incoming bytes of a file: small UTF-8 text becomes a document, the rest an object.

What a user uploads (or a repository holds) is kept as text, editable as a CRDT, when it
is valid UTF-8 without NUL bytes and at most ``max_text_bytes``; anything else is a
content-addressed object. Only the first ``max_text_bytes + 1`` bytes are held in memory
to decide; the rest streams on to the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from storage.objects import ObjectStore, StoredObject, TooLarge


@dataclass(frozen=True)
class Received:
    text: str | None = None  # a document's text, or
    stored: StoredObject | None = None  # the object holding binary or large bytes

    @property
    def size(self) -> int:
        if self.stored is not None:
            return self.stored.size
        return len((self.text or "").encode())


def as_text(data: bytes, max_text_bytes: int) -> str | None:
    """``data`` as document text, or None when it is binary or too large for a CRDT."""
    if len(data) > max_text_bytes or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def receive(
    chunks: AsyncIterable[bytes], store: ObjectStore, *, max_bytes: int, max_text_bytes: int
) -> Received:
    """Text or a stored object; ``TooLarge`` past ``max_bytes`` (nothing kept then)."""
    iterator = aiter(chunks)
    head = bytearray()
    ended = False
    while len(head) <= max_text_bytes:
        try:
            head += await anext(iterator)
        except StopAsyncIteration:
            ended = True
            break
        if len(head) > max_bytes:
            raise TooLarge(max_bytes)
    if ended:
        text = as_text(bytes(head), max_text_bytes)
        if text is not None:
            return Received(text=text)

    async def everything() -> AsyncIterator[bytes]:
        yield bytes(head)
        if not ended:
            async for chunk in iterator:
                yield chunk

    return Received(stored=await store.put_stream(everything(), max_bytes=max_bytes))
