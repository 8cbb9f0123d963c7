"""Secret values masked out of program output before it is stored or broadcast.

``SecretMasker`` is pure text in, text out (no I/O); ``MaskedOutput`` puts one per stream in
front of a run's output sink. ``SecretMasker.mask`` masks a whole text; ``feed`` masks a
stream of chunks: a secret split across two chunks is still masked because ``feed`` holds
back the end of a chunk while it could be the start of a secret, and releases it with the
next chunk (or ``flush``, at the end of the stream or after a short pause in a terminal).
Nothing but such a possible prefix is ever held back, so ordinary output is not delayed.

Bounds and limits, stated plainly: values shorter than ``MIN_SECRET_CHARS`` are not masked
(masking ``1`` or ``true`` would mangle every output); each line of a multi-line value is
also masked on its own (a terminal turns ``\\n`` into ``\\r\\n``). Masking protects against
accidental disclosure (a program that logs its configuration); a program that has the value
in its environment can always print it transformed (reversed, base64), so it is not a
confinement mechanism.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from execution.backend import ExecutionResult
from execution.sandbox import OutputSink

MASK = "*****"
MIN_SECRET_CHARS = 4


def secret_patterns(values: Iterable[str]) -> list[str]:
    """What to mask for these values: each value and each long-enough line of it."""
    found: set[str] = set()
    for value in values:
        if len(value) >= MIN_SECRET_CHARS:
            found.add(value)
        for line in value.splitlines():
            line = line.strip("\r")
            if len(line) >= MIN_SECRET_CHARS:
                found.add(line)
    # Longest first: the regex takes the first alternative that matches at a position.
    return sorted(found, key=lambda s: (-len(s), s))


class SecretMasker:
    def __init__(self, values: Iterable[str]) -> None:
        self.secrets = secret_patterns(values)
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        )
        self._by_first: dict[str, list[str]] = {}
        for secret in self.secrets:
            self._by_first.setdefault(secret[0], []).append(secret)
        self._longest = len(self.secrets[0]) if self.secrets else 0
        self._held = ""

    def __bool__(self) -> bool:
        return self._pattern is not None

    @property
    def pending(self) -> bool:
        """True while the end of the stream so far is held back."""
        return bool(self._held)

    def mask(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def feed(self, text: str) -> str:
        """The part of the stream (``text`` appended) that is safe to show now, masked."""
        if self._pattern is None:
            return text
        buffer = self._held + text
        out: list[str] = []
        pos = 0
        while True:
            match = self._pattern.search(buffer, pos)
            partial = self._partial_start(buffer, pos)
            if match is not None and (partial is None or match.start() < partial):
                out.append(buffer[pos:match.start()])
                out.append(MASK)
                pos = match.end()
                continue
            if partial is None:
                out.append(buffer[pos:])
                self._held = ""
            else:
                out.append(buffer[pos:partial])
                self._held = buffer[partial:]
            return "".join(out)

    def flush(self) -> str:
        """Whatever is held back (the stream ended or paused), masked."""
        held, self._held = self._held, ""
        return self.mask(held)

    def _partial_start(self, buffer: str, pos: int) -> int | None:
        """The first index from which the rest of ``buffer`` may begin a longer secret."""
        end = len(buffer)
        for index in range(max(pos, end - self._longest + 1), end):
            candidates = self._by_first.get(buffer[index])
            if not candidates:
                continue
            tail = buffer[index:]
            for secret in candidates:
                if len(secret) > len(tail) and secret.startswith(tail):
                    return index
        return None


class MaskedOutput:
    """An output sink that masks secret values (per stream: a value may be split across
    two chunks of one stream) before passing text on; ``flush`` releases what was held."""

    def __init__(self, sink: OutputSink, secret_values: tuple[str, ...]) -> None:
        self.sink = sink
        self.values = secret_values
        self.maskers: dict[str, SecretMasker] = {}

    async def __call__(self, stream: str, text: str) -> None:
        masker = self.maskers.get(stream)
        if masker is None:
            masker = self.maskers[stream] = SecretMasker(self.values)
        shown = masker.feed(text)
        if shown:
            await self.sink(stream, shown)

    async def flush(self) -> None:
        for stream, masker in self.maskers.items():
            rest = masker.flush()
            if rest:
                await self.sink(stream, rest)

    def mask_result(self, result: ExecutionResult) -> ExecutionResult:
        if not self.values:
            return result
        masker = SecretMasker(self.values)
        return replace(
            result, stdout=masker.mask(result.stdout), stderr=masker.mask(result.stderr),
            compile_output=(
                masker.mask(result.compile_output) if result.compile_output is not None else None
            ),
        )
