"""Turning "the file's text is now X" into the smallest edits on a ``Y.Text``.

Rebuilding a CRDT from text gives every character a new identity, and clients that
reconnect with the old history then show the text twice (Jupyter #594). So a new text is
applied as a diff: the common prefix and suffix are kept, and the middle is diffed by
lines (difflib) when both sides are small enough, else replaced as one block.

pycrdt indexes a ``Text`` in UTF-8 bytes, so the edits carry byte offsets.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pycrdt import Text

# Above this many lines in the changed middle, difflib's quadratic worst case is not worth it.
_MAX_DIFF_LINES = 5000


@dataclass(frozen=True)
class Edit:
    """Replace ``length`` bytes at byte offset ``index`` with ``insert``."""

    index: int
    length: int
    insert: str


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def _common_suffix(a: str, b: str, prefix: int) -> int:
    limit = min(len(a), len(b)) - prefix
    i = 0
    while i < limit and a[len(a) - 1 - i] == b[len(b) - 1 - i]:
        i += 1
    return i


def text_edits(old: str, new: str) -> list[Edit]:
    """Edits turning ``old`` into ``new``, in descending offset order (apply as listed)."""
    if old == new:
        return []
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, prefix)
    old_mid = old[prefix : len(old) - suffix]
    new_mid = new[prefix : len(new) - suffix]
    base = len(old[:prefix].encode("utf-8"))
    old_lines = old_mid.splitlines(keepends=True)
    new_lines = new_mid.splitlines(keepends=True)
    if len(old_lines) > _MAX_DIFF_LINES or len(new_lines) > _MAX_DIFF_LINES or not old_lines:
        return [Edit(base, len(old_mid.encode("utf-8")), new_mid)]
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    # Byte offset of each old line within the middle.
    offsets = [0]
    for line in old_lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    edits: list[Edit] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        edits.append(
            Edit(base + offsets[i1], offsets[i2] - offsets[i1], "".join(new_lines[j1:j2]))
        )
    edits.reverse()
    return edits


def apply_text(text: Text, new: str) -> bool:
    """Make ``text`` read ``new`` by minimal edits in the caller's transaction; True if changed."""
    edits = text_edits(str(text), new)
    for edit in edits:
        if edit.length:
            del text[edit.index : edit.index + edit.length]
        if edit.insert:
            text.insert(edit.index, edit.insert)
    return bool(edits)
