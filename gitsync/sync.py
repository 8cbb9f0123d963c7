"""The three operations on a connected repository: import, pull, commit & push.

Each runs as a background job (``gitsync.jobs``), one at a time per repository across
processes (a PostgreSQL advisory lock), and keeps ``git_repositories`` true:
``sync_status`` is ``syncing`` while it runs, ``idle`` with ``last_sync_at`` after a
success, ``error`` with ``last_error`` ({code, message, files}) after a failure. Progress
and the result go to the project channel: ``git.sync_started``, ``git.progress``,
``git.sync_finished``, ``git.sync_failed``, plus the usual ``file.*`` events.

- **import** is a pull whose base is empty: files only in the repository are created,
  files only in the project stay (the next push adds them), a path on both sides with
  different content is a conflict.
- **pull** fetches the branch and applies the plan of ``gitsync.merge`` to the live
  documents. Any conflict stops it before anything changes: the error lists the files,
  the remote keeps its commits and the project keeps its text. The new base is recorded
  path by path, so a file that could not be merged is merged again next time.
- **push** pulls first when the remote moved, then commits the project's live state on
  top of the remote head with the user as author, and pushes only if the remote branch is
  still there (``--force-with-lease``): a race with another pusher retries the job.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitsync import paths
from gitsync.apply import Applied, Applier, Content, FileTypes, base_entries, new_base, to_content
from gitsync.config import GitConfig
from gitsync.live import LiveFiles
from gitsync.merge import (
    CHANGED_BOTH,
    NO_BASE,
    RemoteEntry,
    blob_sha,
    ours_unchanged,
    plan_pull,
)
from gitsync.repo import MODE_EXECUTABLE, MODE_FILE, Author, BareRepo, Change, RemoteMoved
from gitsync.runner import Credentials, Git, GitError
from gitsync.textmerge import merge_text
from persistence import git as store
from persistence.db import Database
from storage.objects import ObjectStore

log = logging.getLogger(__name__)


class SyncError(Exception):
    """A sync that failed. ``retry``: worth another attempt (network, a race)."""

    def __init__(self, code: str, message: str, *, files: dict[str, str] | None = None,
                 retry: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.files = files or {}
        self.retry = retry

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.files:
            body["files"] = [{"path": p, "reason": r} for p, r in sorted(self.files.items())]
        return body


class Events(Protocol):
    async def publish(self, project_id: uuid.UUID, event: dict[str, Any]) -> None: ...


class Secrets(Protocol):
    """AES-GCM with key ids (``persistence.crypto.Keyring``)."""

    def encrypt(self, plaintext: str, context: str) -> str: ...

    def decrypt(self, stored: str, context: str) -> str: ...


# (user id, provider) -> credentials of the user's OAuth connection (refreshed), or None.
OAuthCredentials = Callable[[uuid.UUID, str], Awaitable[Credentials | None]]


# "<table>.<column>:<row id>", the keyring's convention (persistence/reencrypt.py moves
# these to a new key like every other secret).
def credentials_context(repository_id: uuid.UUID) -> str:
    return f"git_repositories.credentials_encrypted:{repository_id}"


def webhook_context(repository_id: uuid.UUID) -> str:
    return f"git_repositories.webhook_secret_encrypted:{repository_id}"


@dataclass
class GitRuntime:
    """What the git jobs need; the process running the worker lends it (``ctx.resource``)."""

    config: GitConfig
    db: Database
    git: Git
    live: LiveFiles
    objects: ObjectStore
    events: Events | None
    file_types: FileTypes
    max_text_bytes: int
    secrets: Secrets | None = None
    oauth: OAuthCredentials | None = None

    def repo(self, repository_id: uuid.UUID) -> BareRepo:
        return BareRepo(self.git, self.config.cache_dir / f"{repository_id}.git")

    async def publish(self, project_id: uuid.UUID, event: dict[str, Any]) -> None:
        if self.events is not None:
            try:
                await self.events.publish(project_id, event)
            except Exception:
                log.exception("could not publish %s", event.get("type"))

    async def credentials(
        self, row: dict[str, Any], user_id: uuid.UUID | None
    ) -> Credentials | None:
        """How git authenticates for this repository (and this user, when pushing)."""
        if row["auth_source"] == "oauth":
            who = user_id or row["connected_by"]
            if self.oauth is None or who is None:
                raise SyncError("not_connected", "sign-in with the provider is not available")
            found = await self.oauth(who, row["provider"])
            if found is None and row["connected_by"] is not None and who != row["connected_by"]:
                found = await self.oauth(row["connected_by"], row["provider"])
            if found is None:
                raise SyncError("not_connected",
                                f"connect your {row['provider']} account to sync")
            return found
        if row["auth_source"] != "token":
            return None
        async with self.db.acquire() as conn:
            encrypted, _ = await store.secrets(conn, row["id"])
        if encrypted is None or self.secrets is None:
            raise SyncError("no_credentials", "the repository's token is not available")
        token = self.secrets.decrypt(encrypted, credentials_context(row["id"]))
        return Credentials(row["credentials_username"] or "x-access-token", token)


@dataclass
class Outcome:
    operation: str
    commit: str | None = None
    created: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    branch: str | None = None
    pushed: bool = False
    up_to_date: bool = False

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _git_failure(exc: GitError) -> SyncError:
    if exc.auth_failed:
        return SyncError("auth_failed", "the repository refused the credentials")
    if "fsck" in exc.stderr.lower() or "has dot" in exc.stderr.lower() or \
            "hasdotgit" in exc.stderr.lower() or "hasdotdot" in exc.stderr.lower():
        return SyncError("unsafe_repository",
                         "the repository contains objects git refuses (unsafe paths): "
                         + exc.message)
    return SyncError("git_failed", exc.message, retry=True)


class Sync:
    """One operation on one repository (build one per job run)."""

    def __init__(self, rt: GitRuntime, row: dict[str, Any], user_id: uuid.UUID | None,
                 operation: str) -> None:
        self.rt = rt
        self.row = row
        self.repository_id: uuid.UUID = row["id"]
        self.project_id: uuid.UUID = row["project_id"]
        self.user_id = user_id or row["connected_by"]
        self.operation = operation
        self.repo = rt.repo(self.repository_id)
        self.outcome = Outcome(operation)

    async def progress(self, phase: str, **extra: Any) -> None:
        await self.rt.publish(self.project_id, {
            "type": "git.progress", "repository_id": str(self.repository_id),
            "operation": self.operation, "phase": phase, **extra,
        })

    async def fetch(self, credentials: Credentials | None) -> str | None:
        await self.progress("fetching")
        try:
            return await self.repo.fetch(self.row["repo_url"], self.row["default_branch"],
                                         credentials)
        except GitError as exc:
            raise _git_failure(exc) from exc

    async def remote_tree(self, head: str | None) -> dict[str, RemoteEntry]:
        """The remote's entries; ``importable`` for regular files whose path may become
        a project file (``gitsync.paths``) next to what the project holds already."""
        tree = await self.repo.tree(head) if head is not None else []
        if len(tree) > self.rt.config.max_files:
            raise SyncError("too_many_files",
                            f"the repository has {len(tree)} files; the limit is "
                            f"{self.rt.config.max_files}")
        limit = self.rt.config.max_file_bytes
        candidates = [e.path for e in tree if e.is_blob and (e.size or 0) <= limit]
        async with self.rt.db.acquire() as conn:
            project = [r for r in await store.project_paths(conn, self.project_id)
                       if not r["is_deleted"]]
        files = {r["path"] for r in project if r["type"] == "file"}
        folders = {r["path"] for r in project if r["type"] == "folder"}
        accepted, skipped = paths.accept(candidates, taken=[r["path"] for r in project])
        for path in sorted(accepted):
            parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            if path in folders or any(p in files for p in parents):
                accepted.discard(path)
                skipped.append(paths.Skipped(path, "a folder and a file at one path"))
        self.outcome.skipped = [{"path": s.path, "reason": s.reason} for s in skipped]
        for entry in tree:
            if not entry.is_blob:
                self.outcome.skipped.append({"path": entry.path, "reason": "symlink or submodule"})
            elif (entry.size or 0) > limit:
                self.outcome.skipped.append({"path": entry.path, "reason": "too large"})
        return {e.path: RemoteEntry(e.path, e.sha, e.mode, e.size, e.path in accepted)
                for e in tree}

    async def pull(self, credentials: Credentials | None, head: str | None) -> None:
        """Merge the remote's ``head`` into the project (the base is the last sync's)."""
        live = self.rt.live
        async with self.rt.db.acquire() as conn:
            base_rows = await store.base_tree(conn, self.repository_id)
        ours = await live.read_project(self.project_id)
        theirs = await self.remote_tree(head)
        base = base_entries(base_rows)
        plan = plan_pull(base, theirs, ours)
        blobs = await self._contents([t for t, _ in plan.take] + [t for t, _, _ in plan.merge])
        base_texts = await self._base_texts(plan, credentials)
        # Merges are tried on the texts read above before anything changes: a conflict in
        # one file stops the whole pull (they are merged again from the live text below).
        for remote, ours_entry, base_entry in plan.merge:
            base_text = base_texts.get(base_entry.sha)
            if base_text is None:
                plan.conflicts[remote.path] = NO_BASE
            elif await merge_text(self.rt.git, base_text, ours_entry.text or "",
                                  blobs[remote.sha].text or "") is None:
                plan.conflicts[remote.path] = CHANGED_BOTH
        if plan.conflicts:
            raise SyncError("conflict", f"{len(plan.conflicts)} file(s) changed on both "
                            "sides; nothing was changed", files=plan.conflicts)
        await self.progress("applying", files=len(plan.remote_changed))
        applier = Applier(self.rt.db, live, self.rt.git, self.rt.file_types, self.project_id,
                          self.user_id)
        await applier.create({t.path: blobs[t.sha] for t, o in plan.take if o is None})
        for remote, replaced in plan.take:
            if replaced is not None:
                await applier.replace(replaced, blobs[remote.sha])
        for remote, ours_entry, base_entry in plan.merge:
            await applier.merge(ours_entry, base_texts.get(base_entry.sha),
                                blobs[remote.sha].text or "")
        for gone in plan.delete:
            await applier.delete(gone)
        await self._record_base(plan.remote_changed, theirs, applier.result, head)
        await self._announce(applier.result)
        if applier.result.conflicts:
            raise SyncError("conflict", "some files were edited while the pull ran and "
                            "could not be merged; the rest was pulled",
                            files=applier.result.conflicts)

    async def _contents(self, entries: list[RemoteEntry]) -> dict[str, Content]:
        contents: dict[str, Content] = {}
        async for sha, data in self.repo.blobs(e.sha for e in entries):
            contents[sha] = await to_content(data, self.rt.objects, self.rt.max_text_bytes)
        return contents

    async def _base_texts(self, plan: Any, credentials: Credentials | None) -> dict[str, str]:
        if not plan.merge:
            return {}
        base_commit = self.row["base_commit"]
        if base_commit is None or not await self.repo.fetch_commit(
            self.row["repo_url"], base_commit, credentials
        ):
            return {}
        texts: dict[str, str] = {}
        async for sha, data in self.repo.blobs(b.sha for _, _, b in plan.merge):
            texts[sha] = data.decode("utf-8", errors="replace")
        return texts

    async def _record_base(self, changed: list[str], theirs: dict[str, RemoteEntry],
                           applied: Applied, head: str | None) -> None:
        failed = set(applied.conflicts)
        rows = []
        removed = []
        for path in changed:
            if path in failed:
                continue  # keeps its old base: merged again by the next pull
            remote = theirs.get(path)
            if remote is None:
                removed.append(path)
            else:
                rows.append(new_base(remote, remote.importable, applied.objects.get(path)))
        async with self.rt.db.service() as conn:
            await store.replace_base(conn, self.repository_id, removed, rows)
            await store.set_synced(conn, self.repository_id, head)
        self.row["base_commit"] = head
        self.outcome.commit = head
        self.outcome.created += sum(1 for r in applied.created if r["type"] == "file")
        self.outcome.updated += len(applied.updated)
        self.outcome.deleted += len(applied.deleted)

    async def _announce(self, applied: Applied) -> None:
        events = ([("file.created", r) for r in applied.created]
                  + [("file.deleted", r) for r in applied.deleted])
        if applied.updated:
            async with self.rt.db.acquire() as conn:
                rows = await store.files_by_id(conn, applied.updated)
            events += [("file.updated", r) for r in rows]
        if len(events) > self.rt.config.max_file_events:
            await self.rt.publish(self.project_id, {"type": "git.tree_changed",
                                                    "repository_id": str(self.repository_id)})
            return
        for kind, row in events:
            await self.rt.publish(self.project_id, {"type": kind, "file": row})

    async def push(self, credentials: Credentials | None, branch: str, message: str,
                   author: Author) -> None:
        head = await self.fetch(credentials)
        if head != self.row["base_commit"]:
            await self.pull(credentials, head)
        ours = await self.rt.live.read_project(self.project_id)
        async with self.rt.db.acquire() as conn:
            base = base_entries(await store.base_tree(conn, self.repository_id))
        changes: list[Change] = []
        recorded: list[store.BaseRow] = []
        for path, entry in ours.items():
            known = base.get(path)
            if known is not None and ours_unchanged(known, entry):
                continue
            data = entry.text.encode() if entry.text is not None else \
                await self.rt.objects.read(entry.storage_key or "")
            mode = known.mode if known is not None and known.mode in (MODE_FILE,
                                                                      MODE_EXECUTABLE) \
                else MODE_FILE
            changes.append(Change(path, data, mode))
            recorded.append(store.BaseRow(path, blob_sha(data), mode, True, entry.storage_key))
        removed = [p for p, b in base.items() if b.in_project and p not in ours]
        changes += [Change(p, None) for p in removed]
        self.outcome.branch = branch
        default = branch == self.row["default_branch"]
        if not changes and default and head is not None:
            self.outcome.up_to_date = True
            self.outcome.commit = head
            return
        await self.progress("committing", files=len(changes))
        commit = await self.repo.commit(head, changes, author, message, int(time.time()))
        await self.progress("pushing")
        try:
            await self.repo.push(self.row["repo_url"], commit, branch,
                                 head if default else None, credentials)
        except RemoteMoved as exc:
            if default:
                raise SyncError("remote_moved", "the branch moved while pushing; retrying",
                                retry=True) from exc
            raise SyncError("branch_exists", f"the branch {branch!r} already exists") from exc
        except GitError as exc:
            raise _git_failure(exc) from exc
        self.outcome.commit, self.outcome.pushed = commit, True
        if default:
            async with self.rt.db.service() as conn:
                await store.replace_base(conn, self.repository_id, removed, recorded)
                await store.set_synced(conn, self.repository_id, commit)
            self.row["base_commit"] = commit
