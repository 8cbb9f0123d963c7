"""The file tree's name rules, shared by the API, workdir syncs and git trees."""

from __future__ import annotations

import pytest

from persistence.file_names import NameRejected, check_relative_path

REFUSED = [
    ("../etc/passwd", "'.' or '..'"),
    ("a/../../b", "'.' or '..'"),
    ("/etc/passwd", "absolute"),
    ("a\\b", "absolute"),
    ("a//b", "empty segments"),
    ("report\u202etxt.exe", "U+202E"),
    ("bell\x07", "control characters"),
    ("latin1-\udce9.txt", "UTF-8"),
    (" lead", "whitespace"),
    ("src/.Git/config", "reserved for git"),
    ("git~1", "reserved for git"),
    (".git.", "reserved for git"),
    ("x" * 256, "at most 255"),
]


@pytest.mark.parametrize(("path", "reason"), REFUSED)
def test_a_workdir_path_the_project_cannot_hold_is_refused(path: str, reason: str) -> None:
    with pytest.raises(NameRejected, match=reason.replace("(", r"\(").replace("+", r"\+")):
        check_relative_path(path)


@pytest.mark.parametrize("path", ["a.txt", "src/main.py", "نام\u200cفارسی.txt", ".gitignore",
                                  "gitk.txt", "a b/c d.md"])
def test_ordinary_paths_pass(path: str) -> None:
    assert check_relative_path(path) == path
