"""Which entries of a repository's tree may become project files (pure, no I/O).

A tree comes from whoever controls the repository. git's own ``fsck`` (on for every
fetch, see ``gitsync.runner``) already refuses ``..``, ``.git`` and their NTFS/HFS
disguises in received trees; this is the second, independent line: every path is
checked again against the project's own rules before a file row is written, and
nothing from a tree is ever written to a disk path.

Refused (and reported as skipped, never followed): symlinks (wherever they point),
submodules, empty, ``.`` or ``..`` segments, absolute paths, a ``.git`` segment in any
case or disguise (``.GIT``, ``.git.``, ``git~1``), backslashes, control and bidi
characters, over-long names or paths, and the second of two paths that differ only in
case (they would be one file on a case-insensitive disk, e.g. in a run's workdir).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from persistence.file_names import MAX_DEPTH, MAX_NAME, MAX_PATH, is_dot_git


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def refusal(path: str) -> str | None:
    """Why ``path`` cannot be a project file, or None when it can."""
    if not path or len(path) > MAX_PATH:
        return "empty or too long"
    if path.startswith("/") or "\\" in path:
        return "absolute path or backslash"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return "control character"
    if any(unicodedata.category(ch) == "Cf" for ch in path):
        return "invisible format character"
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        return "too deep"
    for segment in segments:
        if segment in ("", ".", ".."):
            return "empty, '.' or '..' segment"
        if is_dot_git(segment):
            return "'.git' segment"
        if len(segment) > MAX_NAME or segment != segment.strip():
            return "name too long or padded with spaces"
    if any("\udc80" <= ch <= "\udcff" for ch in path):
        return "not UTF-8"
    return None


def case_key(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


def accept(paths: Iterable[str], taken: Iterable[str] = ()) -> tuple[set[str], list[Skipped]]:
    """The paths that may become project files, in order; the first of case twins wins
    (``taken``: paths already in the project, which win over all)."""
    seen = {case_key(p): p for p in taken}
    folders: set[str] = set()
    accepted: set[str] = set()
    skipped: list[Skipped] = []
    ordered = sorted(paths)
    for path in ordered:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.add(case_key("/".join(parts[:depth])))
    for path in ordered:
        reason = refusal(path)
        key = case_key(path)
        if reason is None and seen.get(key, path) != path:
            reason = "differs only in case from another path"
        if reason is None and key in folders:
            reason = "a file where a folder is"
        if reason is not None:
            skipped.append(Skipped(path, reason))
            continue
        seen[key] = path
        accepted.add(path)
    return accepted, skipped
