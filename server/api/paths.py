"""File-tree path rules: '/' separators, no empty, '.' or '..' segments, sane lengths."""

from __future__ import annotations

import posixpath

from server.errors import ApiError

MAX_PATH = 1024
MAX_NAME = 255
MAX_DEPTH = 64


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_path", message)


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
