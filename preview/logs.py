"""Bounded build and app logs with secrets masked, streamed to a listener as they come."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from collections.abc import Awaitable, Callable

from execution.masking import SecretMasker
from execution.sandbox import read_fd

log = logging.getLogger(__name__)

Listener = Callable[[str], Awaitable[None]]
TRUNCATED = "[… earlier output dropped …]\n"


class LogBuffer:
    """Keeps the last ``limit`` characters (a note marks what was dropped); every masked
    chunk goes to ``listener`` too (the project channel). A listener that fails is logged
    and dropped: the build goes on."""

    def __init__(self, limit: int, secrets: tuple[str, ...] = (),
                 listener: Listener | None = None) -> None:
        self.limit = limit
        self.masker = SecretMasker(secrets)
        self.listener = listener
        self._text = ""
        self._dropped = False
        self._lock = asyncio.Lock()

    def mask(self, secrets: tuple[str, ...]) -> None:
        """Mask these values from now on (known once the environment is loaded)."""
        self.masker = SecretMasker(secrets)

    async def write(self, text: str) -> None:
        shown = self.masker.feed(text)
        if shown:
            await self._keep(shown)

    async def line(self, text: str) -> None:
        """A line of our own (a step), never held back by the masker."""
        await self.write(text if text.endswith("\n") else text + "\n")
        await self.flush()

    async def flush(self) -> None:
        rest = self.masker.flush()
        if rest:
            await self._keep(rest)

    async def _keep(self, text: str) -> None:
        self._text += text
        if len(self._text) > self.limit:
            self._text = self._text[-self.limit:]
            self._dropped = True
        if self.listener is not None:
            async with self._lock:
                try:
                    await self.listener(text)
                except Exception:
                    log.exception("log listener failed; no more live logs for this one")
                    self.listener = None

    def text(self) -> str:
        return (TRUNCATED if self._dropped else "") + self._text


async def pump(fd: int, sink: LogBuffer) -> None:
    """Decode a pipe into ``sink`` until EOF (the process and its children are gone)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with contextlib.suppress(asyncio.CancelledError):
        async for chunk in read_fd(fd):
            text = decoder.decode(chunk)
            if text:
                await sink.write(text)
    await sink.flush()
