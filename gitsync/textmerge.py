"""Three-way merge of a text file: ``git merge-file`` on three temporary files.

git's own merge (the one ``git merge`` uses, xdiff), run as a process like every other
git command here (``gitsync.runner``): the merged text, or None when both sides changed
the same lines differently. The files live in a private temporary directory only for
the call.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from gitsync.runner import Git, GitError


def _write(base: str, ours: str, theirs: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="icreate-merge-"))
    for name, text in (("base", base), ("ours", ours), ("theirs", theirs)):
        (folder / name).write_bytes(text.encode())
    return folder


async def merge_text(git: Git, base: str, ours: str, theirs: str) -> str | None:
    if ours == base:
        return theirs
    if theirs in (base, ours):
        return ours
    folder = await asyncio.to_thread(_write, base, ours, theirs)
    try:
        proc = await git.spawn(
            ["merge-file", "-p", "--quiet", "-L", "ours", "-L", "base", "-L", "theirs",
             str(folder / "ours"), str(folder / "base"), str(folder / "theirs")],
        )
        out, err = await proc.communicate()
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    # The exit status is the number of conflicts (negative on an error).
    if proc.returncode is None or proc.returncode > 127:
        raise GitError("merge-file", proc.returncode, err.decode(errors="replace"))
    if proc.returncode != 0:
        return None
    return out.decode("utf-8", errors="surrogateescape")
