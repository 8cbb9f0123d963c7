"""What the document hub needs from storage, and an in-memory implementation.

The PostgreSQL implementation lives in ``persistence.documents``; both pass the same
contract tests (tests/collab/test_store_contract.py). A store never interprets CRDT
bytes itself: the hub hands it pure ``build``/``merge`` callbacks, which the store runs
while it holds the file's lock, so two processes cannot initialise or compact one
document concurrently.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class StoredDocument:
    """A file's persisted document: CRDT state (None before the first save), log, text."""

    state: bytes | None
    updates: list[bytes]
    content: str | None
    update_ids: tuple[int, ...] = ()  # the log rows' ids, in the order of ``updates``
    generation: int | None = None  # of the stored state (None: no state stored)


@dataclass(frozen=True)
class Merged:
    """The result of a merge callback: the new state, its state vector and its text."""

    state: bytes
    state_vector: bytes
    text: str


@dataclass(frozen=True)
class Compaction:
    state: bytes  # the state just written
    text: str
    merged_ids: tuple[int, ...]  # the log rows now part of the state (deleted)
    generation: int | None  # of the state just written (None: the store does not count)

    @property
    def merged_rows(self) -> int:
        return len(self.merged_ids)

    @property
    def state_bytes(self) -> int:
        return len(self.state)


# state (or None) + log updates in id order -> Merged; raises to abort (nothing is written).
# Pure (bytes in, bytes out): stores run it in a worker thread.
MergeFn = Callable[[bytes | None, list[bytes]], Merged]
# files.content -> (state, state vector)
BuildFn = Callable[[str], tuple[bytes, bytes]]


@dataclass(frozen=True)
class LiveCompaction:
    """One room's arguments to ``compact_live``, for ``compact_live_many``."""

    file_id: uuid.UUID
    snapshot: Merged
    generation: int | None  # None: nothing was stored when the caller loaded the file
    own_ids: Sequence[int]
    delete_ids: Sequence[int]
    editor: str | None = None


class FileGone(Exception):
    """The file does not exist (or was deleted, or is a folder)."""


class DocumentStore(Protocol):
    async def load(self, file_id: uuid.UUID) -> StoredDocument:
        """State + log rows + files.content; raises FileGone."""
        ...

    async def initialize(self, file_id: uuid.UUID, build: BuildFn) -> StoredDocument:
        """Under the file lock: if the file still has neither state nor log rows, store
        ``build(files.content)`` as its first state. Returns the document as now stored."""
        ...

    async def append_updates(self, rows: Sequence[tuple[uuid.UUID, bytes]]) -> list[int | None]:
        """Append log rows (several files at once: the group commit), in order. Rows for
        files that no longer exist are dropped. Returns each row's id (ascending in the
        order given), or None where it was dropped."""
        ...

    async def compact(
        self, file_id: uuid.UUID, merge: MergeFn, *, editor: str | None = None
    ) -> Compaction | None:
        """Under the file lock, in one transaction: merge state + log rows read from the
        store, write state, files.content, files.size_bytes (and files.updated_by =
        ``editor`` when the text changed), delete the merged rows. None when the file is gone."""
        ...

    async def compact_live(
        self,
        file_id: uuid.UUID,
        snapshot: Merged,
        *,
        generation: int | None,
        own_ids: Sequence[int],
        delete_ids: Sequence[int],
        editor: str | None = None,
    ) -> Compaction | None:
        """Write a state the caller merged from what it holds, without reading anything back.

        ``snapshot`` is the caller's merge of state ``generation`` (as it loaded or last
        wrote it), the log rows ``delete_ids`` and its live document. Under the file lock,
        only if the stored state is still ``generation`` and every log row of the file is
        one of ``own_ids`` (rows the caller loaded or appended): write ``snapshot``
        (generation + 1), files.content, size_bytes and updated_by as ``compact`` does,
        and delete ``delete_ids``. ``generation`` None: the caller loaded the file with no
        state stored, and the same holds with "no state is stored yet" for the first
        condition. Otherwise write nothing and return None (the caller merges what the
        store holds with ``compact`` instead)."""
        ...

    async def compact_live_many(
        self, items: Sequence[LiveCompaction]
    ) -> list[Compaction | None]:
        """``compact_live`` of several files at once (a shutdown's final compactions), one
        result per item in order. All or nothing: when it raises, none was written."""
        ...

    async def save_version(
        self,
        file_id: uuid.UUID,
        text: str,
        user_id: str | None,
        change_message: str | None,
        *,
        auto_bucket_s: float | None = None,
    ) -> dict[str, Any] | None:
        """Insert the next file_versions row. With ``auto_bucket_s`` (automatic versions)
        nothing is written when the text equals the latest version or when an automatic
        version was written less than that many seconds ago."""
        ...

    async def member_roles(
        self, pairs: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str | None]:
        """The current workspace role of each (user id, workspace id); None: not a member."""
        ...

    async def member_roles_version(self) -> int | None:
        """A number that changes whenever any membership may have; None: not tracked."""
        ...

    async def close(self) -> None:
        """Give back what the store holds (the hub calls it last when it stops)."""
        ...


@dataclass
class _MemoryFile:
    content: str | None
    state: bytes | None = None
    state_vector: bytes | None = None
    log: list[tuple[int, bytes]] = field(default_factory=list)
    generation: int = 0
    versions: list[dict[str, Any]] = field(default_factory=list)
    last_auto_version: float | None = None
    updated_by: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemoryStore:
    """The store contract in memory: tests, and a document hub without a database."""

    def __init__(self) -> None:
        self.files: dict[uuid.UUID, _MemoryFile] = {}
        self.roles: dict[tuple[str, uuid.UUID], str] = {}
        self._next_id = 0
        self.fail_next: int = 0  # test hook: make the next N writes raise

    async def close(self) -> None:
        pass

    def add_file(self, file_id: uuid.UUID, content: str | None = None) -> None:
        self.files[file_id] = _MemoryFile(content)

    def delete_file(self, file_id: uuid.UUID) -> None:
        self.files.pop(file_id, None)

    def _file(self, file_id: uuid.UUID) -> _MemoryFile:
        found = self.files.get(file_id)
        if found is None:
            raise FileGone(str(file_id))
        return found

    def _maybe_fail(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise OSError("store unavailable (test)")

    def _stored(self, f: _MemoryFile) -> StoredDocument:
        return StoredDocument(
            f.state, [u for _, u in f.log], f.content, tuple(i for i, _ in f.log),
            f.generation if f.state is not None else None,
        )

    async def load(self, file_id: uuid.UUID) -> StoredDocument:
        self._maybe_fail()
        return self._stored(self._file(file_id))

    async def initialize(self, file_id: uuid.UUID, build: BuildFn) -> StoredDocument:
        f = self._file(file_id)
        async with f.lock:
            if f.state is None and not f.log:
                f.state, f.state_vector = build(f.content or "")
            return self._stored(f)

    async def append_updates(self, rows: Sequence[tuple[uuid.UUID, bytes]]) -> list[int | None]:
        self._maybe_fail()
        appended: list[int | None] = []
        for file_id, update in rows:
            f = self.files.get(file_id)
            if f is None:
                appended.append(None)
                continue
            self._next_id += 1
            f.log.append((self._next_id, update))
            appended.append(self._next_id)
        return appended

    async def compact(
        self, file_id: uuid.UUID, merge: MergeFn, *, editor: str | None = None
    ) -> Compaction | None:
        self._maybe_fail()
        f = self.files.get(file_id)
        if f is None:
            return None
        async with f.lock:
            rows = list(f.log)
            merged = await asyncio.to_thread(merge, f.state, [u for _, u in rows])
            merged_ids = tuple(i for i, _ in rows)
            self._write_state(f, merged, merged_ids, editor)
            return Compaction(merged.state, merged.text, merged_ids, f.generation)

    async def compact_live(
        self,
        file_id: uuid.UUID,
        snapshot: Merged,
        *,
        generation: int | None,
        own_ids: Sequence[int],
        delete_ids: Sequence[int],
        editor: str | None = None,
    ) -> Compaction | None:
        self._maybe_fail()
        f = self.files.get(file_id)
        if f is None:
            return None
        async with f.lock:
            own = set(own_ids)
            stored_as_loaded = (
                f.state is None if generation is None
                else f.state is not None and f.generation == generation
            )
            if not stored_as_loaded or any(i not in own for i, _ in f.log):
                return None
            wanted = set(delete_ids)
            deleted = tuple(i for i, _ in f.log if i in wanted)
            self._write_state(f, snapshot, deleted, editor)
            return Compaction(snapshot.state, snapshot.text, deleted, f.generation)

    async def compact_live_many(
        self, items: Sequence[LiveCompaction]
    ) -> list[Compaction | None]:
        self._maybe_fail()
        return [
            await self.compact_live(
                i.file_id, i.snapshot, generation=i.generation, own_ids=i.own_ids,
                delete_ids=i.delete_ids, editor=i.editor,
            )
            for i in items
        ]

    @staticmethod
    def _write_state(
        f: _MemoryFile, merged: Merged, merged_ids: Sequence[int], editor: str | None
    ) -> None:
        f.state, f.state_vector = merged.state, merged.state_vector
        f.generation += 1
        if editor is not None and merged.text != f.content:
            f.updated_by = editor
        f.content = merged.text
        gone = set(merged_ids)
        f.log = [(i, u) for i, u in f.log if i not in gone]

    async def save_version(
        self,
        file_id: uuid.UUID,
        text: str,
        user_id: str | None,
        change_message: str | None,
        *,
        auto_bucket_s: float | None = None,
    ) -> dict[str, Any] | None:
        f = self._file(file_id)
        async with f.lock:
            if auto_bucket_s is not None:
                if f.versions and f.versions[-1]["content"] == text:
                    return None
                now = time.monotonic()
                if f.last_auto_version is not None and now - f.last_auto_version < auto_bucket_s:
                    return None
                f.last_auto_version = now
            row: dict[str, Any] = {
                "id": uuid.uuid4(),
                "file_id": file_id,
                "version_number": len(f.versions) + 1,
                "content": text,
                "size_bytes": len(text.encode("utf-8")),
                "changed_by": uuid.UUID(user_id) if user_id else None,
                "change_message": change_message,
                "created_at": datetime.now(UTC),
            }
            f.versions.append(row)
            return row

    async def member_roles(
        self, pairs: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str | None]:
        return {pair: self.roles.get(pair) for pair in pairs}

    async def member_roles_version(self) -> int | None:
        return None  # tests edit ``roles`` directly: every check reads them
