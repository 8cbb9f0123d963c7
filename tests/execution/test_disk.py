"""Host-side file operations on a workdir the sandbox controls: symlink tricks do not work."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from execution import disk


def test_scan_skips_symlinks_fifos_oversize_and_caches(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print(1)")
    (root / "leak").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path)
    os.mkfifo(root / "pipe")
    (root / "big.bin").write_bytes(b"x" * 2000)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "m.pyc").write_bytes(b"\x00")
    result = disk.scan(root, max_file_bytes=1000, max_files=100)
    assert [(f.path, f.data) for f in result.files] == [("src/main.py", b"print(1)")]
    assert set(result.skipped) == {"leak", "linkdir", "pipe", "big.bin"}


def test_scan_stops_at_the_file_count(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text(str(i))
    result = disk.scan(tmp_path, max_file_bytes=100, max_files=3)
    assert len(result.files) == 3 and len(result.skipped) == 2


def test_writing_through_a_planted_directory_symlink_replaces_the_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "work"
    root.mkdir()
    (root / "src").symlink_to(outside)  # the sandbox planted src -> somewhere on the host
    assert disk.write_file(root, "src/main.py", b"print(2)", None)
    assert list(outside.iterdir()) == []
    assert not (root / "src").is_symlink()
    assert (root / "src" / "main.py").read_bytes() == b"print(2)"


def test_writing_onto_a_planted_file_symlink_replaces_the_link(tmp_path: Path) -> None:
    target = tmp_path / "host-file"
    target.write_text("do not touch")
    root = tmp_path / "work"
    root.mkdir()
    (root / "main.py").symlink_to(target)
    assert disk.write_file(root, "main.py", b"new", None)
    assert target.read_text() == "do not touch"
    assert (root / "main.py").read_bytes() == b"new" and not (root / "main.py").is_symlink()


def test_unsafe_paths_are_refused(tmp_path: Path) -> None:
    for bad in ("../escape", "a/../../b", "/", "", "a/./b"):
        assert disk.safe_parts(bad) is None or not disk.write_file(tmp_path, bad, b"x", None)
    assert not (tmp_path.parent / "escape").exists()
    assert disk.safe_parts("/src//main.py") == ["src", "main.py"]


def test_text_detection() -> None:
    assert disk.is_text("héllo\n".encode())
    assert not disk.is_text(b"\x00\x01")
    assert not disk.is_text(b"\xff\xfe")


def test_a_rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    """A preview's static server or a running program reading while the file is rewritten
    used to see it truncated and half written; now the new bytes arrive by rename, so an
    open reader keeps the whole old file and nothing temporary is left behind."""
    old, new = b"<h1>old</h1>\n" * 5000, b"<h1>new</h1>\n" * 6000
    assert disk.write_file(tmp_path, "site/index.html", old, None)
    target = tmp_path / "site" / "index.html"
    with target.open("rb") as reader:
        assert disk.write_file(tmp_path, "site/index.html", new, None)
        assert reader.read() == old
    assert target.read_bytes() == new
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.html"]
    assert oct(target.stat().st_mode & 0o777) == "0o664"


def test_a_failed_rewrite_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert disk.write_file(tmp_path, "a.txt", b"kept", None)

    def half_then_full_disk(fd: int, data: bytes) -> None:
        os.write(fd, data[:2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk, "_write_all", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        disk.write_file(tmp_path, "a.txt", b"new text", None)
    assert (tmp_path / "a.txt").read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temporaries_are_not_project_files(tmp_path: Path) -> None:
    (tmp_path / f".icreate-0123456789abcdef{disk.TEMP_SUFFIX}").write_bytes(b"half")
    (tmp_path / "real.txt").write_bytes(b"x")
    found = disk.scan(tmp_path, max_file_bytes=100, max_files=10)
    assert [f.path for f in found.files] == ["real.txt"]
