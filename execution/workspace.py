"""A project's files on disk: materialized before a run or a terminal, changes brought back.

Text comes from the documents hub (live CRDT text of loaded rooms, stored text otherwise);
changed text files go back through ``write_text`` (a diff into the CRDT, so editors see it
live), new files are inserted into ``files``, binary or large files are stored under
``storage_root`` with ``storage_path`` set. Deleting a file in the workdir does not delete
it from the project (a run cannot destroy work by accident).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mimetypes
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from collab.ports import Documents, ProjectEvents
from execution import disk
from execution.config import ExecutionConfig
from execution.volumes import WATCH, Volume
from persistence import executions as store
from persistence import file_names
from persistence import files as file_store
from persistence.db import Database
from sockets.close_codes import NOT_A_DOCUMENT
from storage.objects import ObjectStore, is_object_key

log = logging.getLogger(__name__)



@dataclass
class Manifest:
    """What was written to disk: path -> (file id, sha256), to tell changes apart."""

    entries: dict[str, tuple[uuid.UUID, str]] = field(default_factory=dict)


@dataclass
class SyncReport:
    created: list[dict[str, Any]] = field(default_factory=list)
    updated: list[uuid.UUID] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    over_quota: list[str] = field(default_factory=list)  # left behind: past the quota
    # left behind: names the project cannot hold (path, why), as the API would refuse them
    rejected: list[tuple[str, str]] = field(default_factory=list)


class Workspaces:
    def __init__(
        self,
        config: ExecutionConfig,
        db: Database,
        *,
        documents: Documents | None = None,
        projects: ProjectEvents | None = None,
        objects: ObjectStore | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.documents = documents
        self.projects = projects
        self.objects = objects
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    def path(self, project_id: uuid.UUID) -> Path:
        return self.config.workdir_root / str(project_id)

    def lock(self, project_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(project_id, asyncio.Lock())

    async def materialize(self, project_id: uuid.UUID, uid: int | None) -> Manifest:
        async with self.db.service() as conn:
            rows = await store.workspace_files(conn, project_id)
        documents = self.documents
        contents: list[tuple[str, uuid.UUID, bytes]] = []
        for row in rows:
            if row["type"] != "file" or disk.safe_parts(row["path"]) is None:
                continue
            data = await self._content(row, documents)
            if data is None or len(data) > self.config.max_sync_file_bytes:
                continue
            contents.append((row["path"].lstrip("/"), row["id"], data))
        root = self.path(project_id)
        return await asyncio.to_thread(_write_all, root, contents, uid)

    async def refresh(
        self, project_id: uuid.UUID, manifest: Manifest, uid: int | None
    ) -> list[str]:
        """Write editors' live text into an open workdir before the next command runs.

        Only files whose room is loaded and whose disk copy is still what the manifest
        recorded: a file the shell changed since is left alone (it is brought back to the
        project by ``sync_back``, the CRDT merges it there).
        """
        documents = self.documents
        if documents is None:
            return []
        changed: list[tuple[str, uuid.UUID, bytes]] = []
        for rel, (file_id, recorded) in manifest.entries.items():
            text = documents.live_text(file_id)
            if text is None:
                continue
            data = text.encode()
            if len(data) <= self.config.max_sync_file_bytes and disk.digest(data) != recorded:
                changed.append((rel, file_id, data))
        if not changed:
            return []
        root = self.path(project_id)
        return await asyncio.to_thread(_refresh_files, root, manifest, changed, uid,
                                       self.config.max_sync_file_bytes)

    async def _content(self, row: dict[str, Any], documents: Documents | None) -> bytes | None:
        objects = self.objects
        if row["storage_path"] and objects is not None and is_object_key(row["storage_path"]):
            size = await objects.size(row["storage_path"])
            if size is None or size > self.config.max_sync_file_bytes:
                return None
            return await objects.read(row["storage_path"])
        if row["storage_path"]:
            blob = self._blob_path(row["storage_path"])
            if blob is None:
                return None
            try:
                return await asyncio.to_thread(blob.read_bytes)
            except OSError:
                return None
        text: str | None = None
        if documents is not None:
            text = await documents.read_text(row["id"])
        if text is None:
            text = row["content"] or ""
        return text.encode()

    def _blob_path(self, storage_path: str) -> Path | None:
        parts = disk.safe_parts(storage_path)
        return self.config.storage_root.joinpath(*parts) if parts else None

    async def sync_back(
        self, project_id: uuid.UUID, manifest: Manifest, user_id: uuid.UUID, quota_bytes: int
    ) -> SyncReport:
        """Bring new and changed files into the project, never past ``quota_bytes`` of
        stored files: what would go past it stays behind (``report.over_quota``)."""
        root = self.path(project_id)
        if not root.is_dir():
            return SyncReport()
        scan = await asyncio.to_thread(
            disk.scan, root, max_file_bytes=self.config.max_sync_file_bytes,
            max_files=self.config.max_sync_files,
        )
        report = SyncReport(skipped=scan.skipped)
        # One sync per project at a time on every node: the sizes read here stay true
        # until this transaction ends (other writers do not take the lock: see the README).
        async with self.db.service() as guard:
            sizes = await store.lock_project_disk(guard, project_id)
            used = sum(sizes.values())
            for found in scan.files:
                known = manifest.entries.get(found.path)
                if known is None:
                    try:
                        file_names.check_relative_path(found.path)
                    except file_names.NameRejected as exc:
                        report.rejected.append((found.path, exc.message))
                        continue
                digest = disk.digest(found.data)
                if known is not None and known[1] == digest:
                    continue
                after = used - (sizes.get(known[0], 0) if known else 0) + len(found.data)
                if after > quota_bytes and after > used:
                    report.over_quota.append(found.path)
                    continue
                try:
                    if known is not None:
                        await self._update(project_id, known[0], found, user_id)
                        report.updated.append(known[0])
                        manifest.entries[found.path] = (known[0], digest)
                        sizes[known[0]] = len(found.data)
                    else:
                        row = await self._create(project_id, found, user_id)
                        if row is None:
                            continue
                        report.created.append(row)
                        manifest.entries[found.path] = (row["id"], digest)
                        sizes[row["id"]] = len(found.data)
                    used = after
                except Exception:
                    log.exception("workspace sync of %s/%s failed", project_id, found.path)
                    report.skipped.append(found.path)
                    continue
        if report.rejected:
            log.info("project %s: %d files not brought back (names refused): %s", project_id,
                     len(report.rejected), ", ".join(ascii(p) for p, _ in report.rejected[:5]))
        if report.over_quota:
            log.info("project %s: %d files not brought back (over its %d-byte quota)",
                     project_id, len(report.over_quota), quota_bytes)
        await self._announce(project_id, report)
        return report

    async def settle_quota(self, volume: Volume, report: SyncReport) -> bool:
        """After a sync: whether the workdir reached the quota. Where only a watcher keeps
        the quota, files left behind by the sync are removed from the workdir too, so the
        host folder comes back under the quota (a loop image cannot go past it anyway)."""
        if volume.mode == WATCH and report.over_quota:
            await asyncio.to_thread(_remove_files, volume.path, report.over_quota)
        return await asyncio.to_thread(volume.full)

    def _inline(self, data: bytes) -> bool:
        return disk.is_text(data) and len(data) <= self.config.max_inline_file_bytes

    async def _update(
        self, project_id: uuid.UUID, file_id: uuid.UUID, found: disk.Found, user_id: uuid.UUID
    ) -> None:
        documents = self.documents
        if self._inline(found.data):
            text = found.data.decode()
            if documents is not None:
                await documents.write_text(file_id, text, user_id)
            else:
                async with self.db.service() as conn:
                    await file_store.write_content(conn, file_id, text, user_id)
            return
        await self._store_blob(project_id, file_id, found.data, user_id)

    async def _store_blob(
        self, project_id: uuid.UUID, file_id: uuid.UUID, data: bytes, user_id: uuid.UUID
    ) -> None:
        objects = self.objects
        if objects is not None:
            # Content-addressed, like uploads and git imports (docs/git.md).
            key = (await objects.put_bytes(data)).key
        else:
            key = f"{project_id}/{file_id}"
            target = self.config.storage_root / str(project_id) / str(file_id)
            await asyncio.to_thread(_write_blob, target, data)
        async with self.db.service() as conn:
            await store.set_stored_blob(conn, file_id, key, len(data), user_id)
        documents = self.documents
        if documents is not None:
            await documents.close_file(file_id, NOT_A_DOCUMENT, "the file is now binary")

    async def _create(
        self, project_id: uuid.UUID, found: disk.Found, user_id: uuid.UUID
    ) -> dict[str, Any] | None:
        parts = disk.safe_parts(found.path)
        if parts is None:
            return None
        inline = self._inline(found.data)
        async with self.db.service() as conn:
            parent_id: uuid.UUID | None = None
            for depth in range(1, len(parts)):
                folder_path = "/".join(parts[:depth])
                folder = await file_store.by_path(conn, project_id, folder_path)
                if folder is None or folder["is_deleted"]:
                    if folder is not None:
                        await file_store.purge_deleted_at(conn, project_id, folder_path)
                    parent_id = await file_store.insert_file(
                        conn, project_id, path=folder_path, name=parts[depth - 1],
                        type="folder", content=None, mime_type=None, language=None,
                        parent_id=parent_id, user_id=user_id,
                    )
                elif folder["type"] != "folder":
                    return None
                else:
                    parent_id = folder["id"]
            path = "/".join(parts)
            existing = await file_store.by_path(conn, project_id, path)
            if existing is not None:
                if not existing["is_deleted"]:
                    return None  # stored under another spelling (leading '/'); left alone
                await file_store.purge_deleted_at(conn, project_id, path)
            mime, _ = mimetypes.guess_type(parts[-1])
            file_id = await file_store.insert_file(
                conn, project_id, path=path, name=parts[-1], type="file",
                content=found.data.decode() if inline else None, mime_type=mime,
                language=_language_of(parts[-1]), parent_id=parent_id, user_id=user_id,
            )
        if not inline:
            await self._store_blob(project_id, file_id, found.data, user_id)
        async with self.db.service() as conn:
            return await file_store.get_file(conn, file_id)

    async def _announce(self, project_id: uuid.UUID, report: SyncReport) -> None:
        projects = self.projects
        if projects is None:
            return
        for row in report.created:
            await projects.publish(project_id, {"type": "file.created", "file": row})


LANGUAGE_BY_SUFFIX = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".c": "c", ".h": "c",
    ".cpp": "cpp", ".hpp": "cpp", ".sh": "shell", ".java": "java", ".go": "go", ".rs": "rust",
    ".json": "json", ".md": "markdown", ".txt": "plaintext", ".html": "html", ".css": "css",
}


def _language_of(name: str) -> str | None:
    return LANGUAGE_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())


def _write_all(root: Path, contents: list[tuple[str, uuid.UUID, bytes]],
               uid: int | None) -> Manifest:
    disk.ensure_root(root, uid)
    if uid is not None:
        disk.chown_tree(root, uid)
    manifest = Manifest()
    for rel, file_id, data in contents:
        try:
            written = disk.write_file(root, rel, data, uid)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The workdir is full (the quota shrank, or the terminal filled it): the file
            # stays in the project, the run sees it missing.
            log.info("workdir %s full: %s not written", root, rel)
            continue
        if written:
            manifest.entries[rel] = (file_id, disk.digest(data))
    return manifest


def _refresh_files(root: Path, manifest: Manifest,
                   changed: list[tuple[str, uuid.UUID, bytes]], uid: int | None,
                   max_bytes: int) -> list[str]:
    written: list[str] = []
    for rel, file_id, data in changed:
        on_disk = disk.read_file(root, rel, max_bytes)
        if on_disk is None or disk.digest(on_disk) != manifest.entries[rel][1]:
            continue  # changed or removed in the workdir since: the shell's version wins
        if disk.write_file(root, rel, data, uid):
            manifest.entries[rel] = (file_id, disk.digest(data))
            written.append(rel)
    return written


def quota_message(quota_bytes: int, report: SyncReport) -> str:
    text = f"project disk quota of {quota_bytes / 1024 / 1024:g} MiB reached"
    if report.over_quota:
        count = len(report.over_quota)
        text += f"; {count} new or changed file{'s' if count != 1 else ''} not saved"
    return text


def rejected_message(report: SyncReport) -> str | None:
    """Which new files were left in the workdir because of their names, and why (names
    shown with their hidden characters escaped, so the message cannot mislead either)."""
    if not report.rejected:
        return None
    count = len(report.rejected)
    shown = "; ".join(f"{path!a}: {why}" for path, why in report.rejected[:5])
    more = f" (and {count - 5} more)" if count > 5 else ""
    return (f"{count} new file{'s' if count != 1 else ''} not saved, name not allowed: "
            f"{shown}{more}")


def _remove_files(root: Path, paths: list[str]) -> None:
    for rel in paths:
        disk.remove_file(root, rel)


def _write_blob(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
