"""The project file tree's name rules, one set for every way a file comes in (pure, no I/O).

The REST API (``server/api/paths.py`` turns a refusal into its HTTP error), uploads, files
brought back from a run's or a terminal's workdir (``execution/workspace.py``) and git
trees (``gitsync/paths.py``, which adds rules of its own) all apply them: '/' separators,
no empty, '.' or '..' segments (nothing climbs out of the project), sane lengths, no
control characters, no characters that make a name display as another name, no name
padded with spaces, and no ``.git`` in any case or disguise (a workdir holding one would be
a repository for every git command run in it).
"""

from __future__ import annotations

import unicodedata

MAX_PATH = 1024
MAX_NAME = 255
MAX_DEPTH = 64

# Zero-width (non-)joiners are format characters too, but Persian, the Indic scripts and
# emoji sequences need them to spell words; they do not reorder or hide text.
_JOINERS = frozenset("\u200c\u200d")


class NameRejected(ValueError):
    """A name or path the project cannot hold; ``status``/``code`` are the API's answer."""

    def __init__(self, message: str, *, status: int = 422, code: str = "invalid_path") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def misleading_character(name: str) -> str | None:
    """The first character that would make ``name`` display as another name, if any.

    Bidi controls (U+202E shows ``invoice_\u202efdp.exe`` as ``invoice_exe.pdf``), the
    other format characters (zero-width space, BOM, soft hyphen...), line and paragraph
    separators, and C1 controls.
    """
    if name.isascii():
        return None
    for char in name:
        category = unicodedata.category(char)
        if category in ("Cf", "Zl", "Zp", "Cc") and char not in _JOINERS:
            return char
    return None


def is_dot_git(segment: str) -> bool:
    """``.git`` in any case or disguise: NTFS ignores trailing dots and spaces and knows 8.3
    short names, HFS+ ignores some zero-width characters (git's own is_ntfs_dotgit /
    is_hfs_dotgit, simplified)."""
    folded = "".join(ch for ch in segment if unicodedata.category(ch) != "Cf").lower()
    folded = folded.rstrip(". ")
    return folded == ".git" or folded.startswith("git~")


def check_name(name: str) -> str:
    """A single path segment, or NameRejected."""
    if not name or name in {".", ".."}:
        raise NameRejected("a name cannot be empty, '.' or '..'")
    if "/" in name or "\\" in name:
        raise NameRejected("a name cannot contain '/' or '\\'")
    if len(name) > MAX_NAME:
        raise NameRejected(f"a name is at most {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise NameRejected("a name cannot contain control characters")
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        # How Python spells the bytes of a file name that is not UTF-8.
        raise NameRejected("a name must be valid UTF-8")
    char = misleading_character(name)
    if char is not None:
        label = unicodedata.name(char, "a control character").lower()
        raise NameRejected(
            f"a name cannot contain U+{ord(char):04X} ({label}): bidirectional, invisible "
            "and control characters make a name display as another one",
            status=400, code="invalid_name",
        )
    if name != name.strip():
        raise NameRejected("a name cannot start or end with whitespace")
    if is_dot_git(name):
        raise NameRejected(f"'{name}' is reserved for git", code="reserved_name")
    return name


def normalise_path(path: str) -> str:
    """'src\\app/main.py' -> 'src/app/main.py'; a leading '/' is dropped; else NameRejected."""
    unified = path.replace("\\", "/").strip("/")
    if not unified:
        raise NameRejected("the path is empty")
    segments = unified.split("/")
    if len(segments) > MAX_DEPTH:
        raise NameRejected(f"a path is at most {MAX_DEPTH} levels deep")
    for segment in segments:
        if segment == "":
            raise NameRejected("a path cannot contain empty segments ('//')")
        check_name(segment)
    normalised = "/".join(segments)
    if len(normalised) > MAX_PATH:
        raise NameRejected(f"a path is at most {MAX_PATH} characters")
    return normalised


def check_relative_path(path: str) -> str:
    """A path exactly as the project would store it (no leading '/', no '\\'), or
    NameRejected: what a workdir scan found is taken as it is, never re-spelt."""
    if path.startswith("/") or "\\" in path:
        raise NameRejected("a path cannot be absolute or contain '\\'")
    normalised = normalise_path(path)
    if normalised != path:
        raise NameRejected("a path cannot contain empty segments ('//')")
    return normalised
