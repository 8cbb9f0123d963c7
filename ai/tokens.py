"""A local token estimate for when a provider reports no usage (marked as estimated).

BPE tokenizers of current models average about four characters of English or code per
token. The estimate counts, in one regex pass (no Python loop per piece): runs of up to four
letters, runs of up to three digits, and every other non-space character on its own (so
operators, brackets and non-Latin text count about one token per character).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PIECES = re.compile(r"[A-Za-z]{1,4}|\d{1,3}|[^\sA-Za-z\d]")
# Per-message framing (role markers) that chat templates add.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    return max(1, len(_PIECES.findall(text)))


def estimate_messages(contents: Iterable[str]) -> int:
    return sum(estimate_tokens(text) + MESSAGE_OVERHEAD for text in contents)
