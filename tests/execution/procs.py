"""Host processes of a sandbox uid: none may outlive a run, a terminal or a shutdown."""

from __future__ import annotations

from pathlib import Path


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except FileNotFoundError:
                continue
    return found
