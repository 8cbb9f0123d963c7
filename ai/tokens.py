"""A local token estimate for when a provider reports no usage (marked as estimated).

BPE tokenizers of current models average about four characters of English or code per
token; words, numbers and punctuation runs are counted separately so that short tokens
(operators, brackets, one-letter names) are not under-counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

_PIECES = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]+|\s+")
CHARS_PER_TOKEN = 4.0
# Per-message framing (role markers) that chat templates add.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    total = 0
    for match in _PIECES.finditer(text):
        piece = match.group()
        if piece[0].isspace():
            # Whitespace mostly merges into the next token; long runs (indentation) don't.
            total += len(piece) // 8
            continue
        if piece.isascii():
            total += max(1, math.ceil(len(piece) / CHARS_PER_TOKEN))
        else:
            # Non-ASCII text (CJK, accents, emoji) costs about one token per character.
            total += len(piece)
    return max(1, total)


def estimate_messages(contents: Iterable[str]) -> int:
    return sum(estimate_tokens(text) + MESSAGE_OVERHEAD for text in contents)
