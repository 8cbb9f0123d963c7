"""File-tree path rules as HTTP errors: the rules themselves are ``persistence/file_names.py``
(shared with files brought back from workdirs and git trees)."""

from __future__ import annotations

import posixpath

from persistence import file_names
from persistence.file_names import MAX_DEPTH, MAX_NAME, MAX_PATH, misleading_character
from server.errors import ApiError

__all__ = ["MAX_DEPTH", "MAX_NAME", "MAX_PATH", "check_name", "misleading_character",
           "normalise_path"]


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_path", message)


def _api_error(exc: file_names.NameRejected) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def check_name(name: str) -> str:
    """A single path segment, or 422 (400 ``invalid_name`` for a misleading character)."""
    try:
        return file_names.check_name(name)
    except file_names.NameRejected as exc:
        raise _api_error(exc) from None


def normalise_path(path: str) -> str:
    """'src\\app/main.py' -> 'src/app/main.py'; a leading '/' is dropped; else 422."""
    try:
        return file_names.normalise_path(path)
    except file_names.NameRejected as exc:
        raise _api_error(exc) from None


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
