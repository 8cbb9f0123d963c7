"""File-tree path rules: '/' separators, no empty, '.' or '..' segments, sane lengths, and
no characters that make a name display as something else."""

from __future__ import annotations

import posixpath
import unicodedata

from server.errors import ApiError

MAX_PATH = 1024
MAX_NAME = 255
MAX_DEPTH = 64


# Zero-width (non-)joiners are format characters too, but Persian, the Indic scripts and
# emoji sequences need them to spell words; they do not reorder or hide text.
_JOINERS = frozenset("\u200c\u200d")


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_path", message)


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


def check_name(name: str) -> str:
    """A single path segment, or 422."""
    if not name or name in {".", ".."}:
        raise invalid("a name cannot be empty, '.' or '..'")
    if "/" in name or "\\" in name:
        raise invalid("a name cannot contain '/' or '\\'")
    if len(name) > MAX_NAME:
        raise invalid(f"a name is at most {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise invalid("a name cannot contain control characters")
    char = misleading_character(name)
    if char is not None:
        label = unicodedata.name(char, "a control character").lower()
        raise ApiError(
            400, "invalid_name",
            f"a name cannot contain U+{ord(char):04X} ({label}): bidirectional, invisible "
            "and control characters make a name display as another one",
        )
    if name != name.strip():
        raise invalid("a name cannot start or end with whitespace")
    return name


def normalise_path(path: str) -> str:
    """'src\\app/main.py' -> 'src/app/main.py'; a leading '/' is dropped; else 422."""
    unified = path.replace("\\", "/").strip("/")
    if not unified:
        raise invalid("the path is empty")
    segments = unified.split("/")
    if len(segments) > MAX_DEPTH:
        raise invalid(f"a path is at most {MAX_DEPTH} levels deep")
    for segment in segments:
        if segment == "":
            raise invalid("a path cannot contain empty segments ('//')")
        check_name(segment)
    normalised = "/".join(segments)
    if len(normalised) > MAX_PATH:
        raise invalid(f"a path is at most {MAX_PATH} characters")
    return normalised


def join(parent_path: str | None, name: str) -> str:
    path = f"{parent_path}/{name}" if parent_path else name
    if len(path) > MAX_PATH:
        raise invalid(f"a path is at most {MAX_PATH} characters")
    if path.count("/") + 1 > MAX_DEPTH:
        raise invalid(f"a path is at most {MAX_DEPTH} levels deep")
    return path


def split(path: str) -> tuple[str | None, str]:
    """(parent path or None at the root, name)."""
    parent, name = posixpath.split(path)
    return (parent or None), name


def is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor + "/")
