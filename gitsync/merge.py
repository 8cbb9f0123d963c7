"""What a pull does to each path, decided from three sides (pure, no I/O).

- **base**: the tree of the last sync's commit, kept in ``git_repository_files`` (path,
  blob id, mode, object key, whether it became a project file);
- **theirs**: the tree of the remote branch's head;
- **ours**: the project's files now (live text: what collaborators see).

A path the remote did not change is left alone (our changes wait for the next push). A
path it changed is taken when ours still matches the base, merged line by line when both
sides changed text (``gitsync.textmerge``: ``git merge-file``), and is a **conflict** otherwise:
changed on both sides with overlapping lines, changed on one side and deleted on the
other, added on both sides with different content, or binary on both sides. A pull with
any conflict changes nothing and lists them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

CHANGED_BOTH = "changed here and in the repository"
CHANGED_HERE_DELETED_THERE = "changed here, deleted in the repository"
DELETED_HERE_CHANGED_THERE = "deleted here, changed in the repository"
ADDED_BOTH = "added here and in the repository with different content"
BINARY_BOTH = "binary file changed here and in the repository"
NO_BASE = "changed on both sides and the common version is no longer in the repository"


def blob_sha(data: bytes) -> str:
    """git's id of a blob with these bytes (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class BaseEntry:
    path: str
    sha: str
    mode: str
    in_project: bool  # it became a project file (not skipped) at the last sync
    storage_key: str | None = None  # set when it became a stored object


@dataclass(frozen=True)
class RemoteEntry:
    path: str
    sha: str
    mode: str
    size: int | None
    importable: bool  # a regular file whose path passed gitsync.paths


@dataclass(frozen=True)
class OursEntry:
    path: str
    file_id: object
    text: str | None  # a document's live text; None for a stored object
    storage_key: str | None = None

    @property
    def sha(self) -> str | None:
        return blob_sha(self.text.encode()) if self.text is not None else None


@dataclass
class PullPlan:
    take: list[tuple[RemoteEntry, OursEntry | None]] = field(default_factory=list)
    delete: list[OursEntry] = field(default_factory=list)
    merge: list[tuple[RemoteEntry, OursEntry, BaseEntry]] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    # The base after the pull: every remote entry (the caller fills in_project/keys).
    remote_changed: list[str] = field(default_factory=list)


def _same(base: BaseEntry | None, remote: RemoteEntry | None) -> bool:
    if base is None or remote is None:
        return base is None and remote is None
    return base.sha == remote.sha and base.mode == remote.mode


def ours_unchanged(base: BaseEntry | None, ours: OursEntry | None) -> bool:
    """Ours is what the last sync left (absent where the base had no project file)."""
    if base is None or not base.in_project:
        return ours is None
    if ours is None:
        return False
    if base.storage_key is not None or ours.text is None:
        return base.storage_key is not None and ours.storage_key == base.storage_key
    return ours.sha == base.sha


def plan_pull(
    base: Mapping[str, BaseEntry], theirs: Mapping[str, RemoteEntry],
    ours: Mapping[str, OursEntry],
) -> PullPlan:
    plan = PullPlan()
    for path in sorted(set(base) | set(theirs)):
        b, t = base.get(path), theirs.get(path)
        if _same(b, t):
            continue
        plan.remote_changed.append(path)
        o = ours.get(path)
        wanted = t if t is not None and t.importable else None
        if ours_unchanged(b, o):
            if wanted is not None:
                plan.take.append((wanted, o))
            elif o is not None:
                plan.delete.append(o)
            continue
        # Ours changed since the last sync too.
        if wanted is None:
            if o is not None:
                plan.conflicts[path] = CHANGED_HERE_DELETED_THERE
            continue  # deleted on both sides (or never imported): nothing to do
        if o is None:
            plan.conflicts[path] = DELETED_HERE_CHANGED_THERE
        elif o.sha is not None and o.sha == wanted.sha:
            continue  # the same change on both sides
        elif o.text is None or (b is not None and b.storage_key is not None):
            plan.conflicts[path] = BINARY_BOTH
        elif b is None or not b.in_project:
            plan.conflicts[path] = ADDED_BOTH
        else:
            plan.merge.append((wanted, o, b))
    return plan
