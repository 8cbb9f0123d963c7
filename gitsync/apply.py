"""Carrying a pull's plan out on the project: new files, changed files, merges, deletions.

New files (and their folders) are inserted in one statement per kind: an import of 5,000
files is a few statements, and no document exists for them yet. Changed documents go
through ``gitsync.live`` as diffs of the CRDT text, re-merged from the current text when
an editor typed since the merge was computed. Binary and large content goes to the
object store and never into a CRDT. Returns what changed, for the project channel and
the new base tree.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitsync.live import LiveFiles
from gitsync.merge import CHANGED_BOTH, NO_BASE, BaseEntry, OursEntry, RemoteEntry
from gitsync.runner import Git
from gitsync.textmerge import merge_text
from persistence import files as file_store
from persistence import git as store
from persistence.db import Database
from storage.ingest import as_text
from storage.objects import ObjectStore

log = logging.getLogger(__name__)

# An editor typing faster than a merge can be computed makes it retry; past this many
# tries the file is reported as a conflict (nothing lost: it is merged on the next pull).
MERGE_TRIES = 20

FileTypes = Callable[[str], tuple[str | None, str | None]]  # name -> (mime, language)


@dataclass(frozen=True)
class Content:
    """A remote blob as the project keeps it: text, or a stored object."""

    text: str | None
    storage_key: str | None
    size: int


@dataclass
class Applied:
    created: list[dict[str, Any]] = field(default_factory=list)  # rows, folders included
    updated: list[uuid.UUID] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)  # found while applying
    objects: dict[str, str] = field(default_factory=dict)  # path -> object key written


async def to_content(data: bytes, objects: ObjectStore, max_text_bytes: int) -> Content:
    text = as_text(data, max_text_bytes)
    if text is not None:
        return Content(text, None, len(data))
    stored = await objects.put_bytes(data)
    return Content(None, stored.key, stored.size)


class Applier:
    def __init__(
        self, db: Database, live: LiveFiles, git: Git, file_types: FileTypes,
        project_id: uuid.UUID, user_id: uuid.UUID,
    ) -> None:
        self.db = db
        self.live = live
        self.git = git
        self.file_types = file_types
        self.project_id = project_id
        self.user_id = user_id
        self.result = Applied()

    async def create(self, entries: Mapping[str, Content]) -> None:
        """New files at these paths, with the folders they need, in one transaction."""
        if not entries:
            return
        async with self.db.service() as conn:
            existing = {r["path"]: r for r in await store.project_paths(conn, self.project_id)
                        if not r["is_deleted"]}
            folders: dict[str, uuid.UUID] = {
                p: r["id"] for p, r in existing.items() if r["type"] == "folder"
            }
            nodes: list[store.NewNode] = []
            for path in sorted(entries):
                parts = path.split("/")
                for depth in range(1, len(parts)):
                    folder = "/".join(parts[:depth])
                    if folder not in folders:
                        parent = folders.get("/".join(parts[:depth - 1])) if depth > 1 else None
                        folders[folder] = uuid.uuid4()
                        nodes.append(store.NewNode(folders[folder], folder, parts[depth - 1],
                                                   "folder", None, None, None, None, parent,
                                                   None))
                content = entries[path]
                mime, language = self.file_types(parts[-1])
                parent = folders.get("/".join(parts[:-1])) if len(parts) > 1 else None
                nodes.append(store.NewNode(
                    uuid.uuid4(), path, parts[-1], "file", content.text, content.size, mime,
                    language if content.text is not None else None, parent,
                    content.storage_key,
                ))
                if content.storage_key is not None:
                    self.result.objects[path] = content.storage_key
            await store.insert_nodes(conn, self.project_id, self.user_id, nodes)
            self.result.created.extend(await store.files_by_id(conn, [n.id for n in nodes]))

    async def replace(self, ours: OursEntry, content: Content) -> None:
        """Ours still is the base's version: it becomes theirs."""
        file_id = uuid.UUID(str(ours.file_id))
        mime, _ = self.file_types(ours.path.rsplit("/", 1)[-1])
        if content.storage_key is not None:
            async with self.db.service() as conn:
                await file_store.set_stored_object(conn, file_id, content.storage_key,
                                                   content.size, mime, self.user_id)
            await self.live.became_object(file_id)
            self.result.objects[ours.path] = content.storage_key
        elif ours.text is None:
            async with self.db.service() as conn:
                await file_store.set_text_from_object(conn, file_id, content.text or "", mime,
                                                      self.user_id)
        else:
            # Ours is exactly the base text; an edit since then is merged like any other.
            await self._merge_live(ours.path, file_id, ours.text, content.text or "")
            return
        self.result.updated.append(file_id)

    async def merge(self, ours: OursEntry, base_text: str | None, theirs: str) -> None:
        """Both sides changed the text: three-way merge into the live document."""
        if base_text is None:
            self.result.conflicts[ours.path] = NO_BASE
            return
        await self._merge_live(ours.path, uuid.UUID(str(ours.file_id)), base_text, theirs)

    async def _merge_live(self, path: str, file_id: uuid.UUID, base: str, theirs: str) -> None:
        for _ in range(MERGE_TRIES):
            current = await self.live.current_text(file_id)
            if current is None:
                self.result.conflicts[path] = "deleted here while the pull ran"
                return
            merged = await merge_text(self.git, base, current, theirs)
            if merged is None:
                self.result.conflicts[path] = CHANGED_BOTH
                return
            if merged == current or await self.live.apply_if_unchanged(
                file_id, current, merged, self.user_id
            ):
                self.result.updated.append(file_id)
                return
        self.result.conflicts[path] = "edited too fast to merge; pull again"

    async def delete(self, ours: OursEntry) -> None:
        file_id = uuid.UUID(str(ours.file_id))
        async with self.db.service() as conn:
            node = await file_store.get_file(conn, file_id)
            if node is None or node["is_deleted"]:
                return
            await file_store.set_deleted(conn, node, True, self.user_id)
            row = await file_store.get_file(conn, file_id)
        await self.live.deleted(file_id)
        if row is not None:
            self.result.deleted.append(row)


def new_base(
    remote: RemoteEntry, in_project: bool, storage_key: str | None
) -> store.BaseRow:
    return store.BaseRow(remote.path, remote.sha, remote.mode, in_project, storage_key)


def base_entries(rows: Mapping[str, store.BaseRow]) -> dict[str, BaseEntry]:
    return {p: BaseEntry(p, r.blob_sha, r.mode, r.in_project, r.storage_key)
            for p, r in rows.items()}
