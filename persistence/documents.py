"""PostgreSQL store of the document hub: CRDT states, the update log, file_versions.

Implements ``collab.store.DocumentStore``. Every write that must not race with another
process (first state from text, compaction, numbering versions) runs in one transaction
under ``pg_advisory_xact_lock`` on the file, and reads what it merges from the database
after taking the lock. The one exception, ``compact_live``, writes a process's own
document, and only when the database proves it holds everything stored
(sql/0063_document_state_generation.sql).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from collab.store import (
    BuildFn,
    Compaction,
    FileGone,
    LiveCompaction,
    Merged,
    MergeFn,
    StoredDocument,
)
from persistence.db import Database
from persistence.grouped import Grouped

LOCK_FILE = "select pg_advisory_xact_lock(hashtextextended('doc:' || $1::uuid::text, 0))"
SELECT_FILE_STATE = """
select f.content, f.type, f.is_deleted, s.state, s.generation
from public.files f
left join public.document_states s on s.file_id = f.id
where f.id = $1
"""
SELECT_LOG = """
select id, update from public.document_updates where file_id = $1 order by id
"""
# Loading documents (persistence/grouped.py): state, log and text of every file asked for
# in one statement (one snapshot, so a compaction committing meanwhile cannot pair the old
# state with the already-trimmed log). Files that do not exist have no row.
SELECT_DOCUMENTS = """
select f.id, f.content, f.type, f.is_deleted, s.state, s.generation, l.ids, l.updates
from unnest($1::uuid[]) k(id)
join public.files f on f.id = k.id
left join public.document_states s on s.file_id = f.id
left join lateral (
    select array_agg(u.id order by u.id) as ids, array_agg(u.update order by u.id) as updates
    from public.document_updates u where u.file_id = f.id
) l on true
"""
# The group commit: rows in the order given (ids ascend with it), rows of files that are
# gone skipped. Two arrays back, not a record per row: the new ids in order and the
# (1-based) positions skipped, so the writer maps ids to its rows without decoding UUIDs.
INSERT_LOG = """
with input as (
    select u.file_id, u.update, u.n, f.id is not null as known
    from unnest($1::uuid[], $2::bytea[]) with ordinality as u(file_id, update, n)
    left join public.files f on f.id = u.file_id
), inserted as (
    insert into public.document_updates (file_id, update)
    select file_id, update from input where known order by n
    returning id
)
select array(select id from inserted order by id) as ids,
       array(select n from input where not known order by n) as skipped
"""
# What compaction reads, in one round trip once the file lock is held.
SELECT_FOR_COMPACTION = """
select f.type, s.state, l.ids, l.updates
from public.files f
left join public.document_states s on s.file_id = f.id
left join lateral (
  select array_agg(u.id order by u.id) as ids, array_agg(u.update order by u.id) as updates
  from public.document_updates u where u.file_id = f.id
) l on true
where f.id = $1
"""
# What compaction writes, in one round trip: the state, the text (and who changed it, only
# when it changed) and the deletion of exactly the rows that were merged.
WRITE_COMPACTION = """
with state as (
  insert into public.document_states (file_id, state, state_vector, updated_at, generation)
  values ($1, $2, $3, now(), 1)
  on conflict (file_id) do update
    set state = excluded.state, state_vector = excluded.state_vector, updated_at = now(),
        generation = public.document_states.generation + 1
  returning generation
), text as (
  update public.files
  set content = $4, size_bytes = $5, updated_at = now(), updated_by = coalesce($6, updated_by)
  where id = $1 and content is distinct from $4
), merged as (
  -- Exactly the rows that were merged: an append whose id was drawn before the merge read
  -- the log but that committed after it has a lower id than the newest merged row, and
  -- `id <= max` would delete it unmerged.
  delete from public.document_updates where id = any($7::bigint[])
)
select generation from state
"""
COMPACT_LIVE = "select public.compact_document_live($1, $2, $3, $4, $5, $6, $7, $8, $9)"
# compact_document_live for many files in one statement (one round trip, one transaction:
# all or nothing). The id lists travel as array literals ('{1,2}'): unnest cannot take
# arrays of uneven arrays. Rows come back in input order, which the caller sorted by file
# id, so two processes batching overlapping files take their file locks in the same order.
COMPACT_LIVE_MANY = """
select public.compact_document_live(
  c.file_id, c.generation, c.own::bigint[], c.del::bigint[], c.state, c.state_vector,
  c.content, c.size, c.editor
)
from unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[],
            $7::text[], $8::integer[], $9::uuid[])
  with ordinality as c(file_id, generation, own, del, state, state_vector, content, size,
                       editor, n)
order by c.n
"""
INSERT_FIRST_STATE = """
insert into public.document_states (file_id, state, state_vector)
values ($1, $2, $3)
on conflict (file_id) do nothing
"""
SELECT_LATEST_VERSION = """
select content from public.file_versions where file_id = $1
order by version_number desc limit 1
"""
SELECT_AUTO_VERSION_RECENT = """
select coalesce(last_auto_version_at > now() - make_interval(secs => $2), false)
from public.document_states where file_id = $1
"""
MARK_AUTO_VERSION = """
update public.document_states set last_auto_version_at = now() where file_id = $1
"""
INSERT_VERSION = """
insert into public.file_versions
  (file_id, version_number, content, size_bytes, changed_by, change_message)
select $1, coalesce(max(version_number), 0) + 1, $2, $3, $4, $5
from public.file_versions where file_id = $1
returning id, file_id, version_number, content, size_bytes, changed_by, change_message,
          created_at
"""
SELECT_MEMBER_ROLES_VERSION = "select version from public.member_roles_version"
SELECT_MEMBER_ROLES = """
select p.user_id, p.workspace_id, m.role
from unnest($1::uuid[], $2::uuid[]) as p(user_id, workspace_id)
left join public.workspace_members m
  on m.user_id = p.user_id and m.workspace_id = p.workspace_id
"""


def _usable(row: asyncpg.Record | None) -> asyncpg.Record:
    if row is None or row["type"] == "folder" or row["is_deleted"]:
        raise FileGone("no such document")
    return row


def _int_array(ids: Sequence[int]) -> str:
    return "{" + ",".join(str(int(i)) for i in ids) + "}"


class _HeldConnection:
    """One pooled connection kept for the hub's frequent one-statement calls.

    The update log's group commits (tens a second while people type), compactions from
    memory (one per edited file every few seconds) and the membership-version poll: a pool
    acquire and release cost this process more CPU than such a statement itself (about 170
    and 250 us here). Calls take turns; a failed call gives the connection back (the pool
    replaces a broken one) and the next call takes another.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        async with self._lock:
            if self._conn is None:
                self._conn = await self._db.pool.acquire()
            try:
                return await getattr(self._conn, method)(query, *args)
            except BaseException:
                await self._give_back()
                raise

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._run("fetchrow", query, *args)
        return row

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run("fetch", query, *args)
        return rows

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return row[0] if row is not None else None

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._db.pool.release(conn))

    async def close(self) -> None:
        async with self._lock:
            await self._give_back()


class PostgresDocumentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._held = _HeldConnection(db)
        db.on_close(self._held.close)
        # Documents loaded at the same time (a restart's reconnections): one query.
        self._loads: Grouped[uuid.UUID, StoredDocument] = Grouped(
            self._load_many, name="document-loads"
        )

    @property
    def load_queries(self) -> int:
        return self._loads.queries

    async def close(self) -> None:
        await self._loads.stop()
        await self._held.close()

    async def _read(self, conn: asyncpg.Connection, file_id: uuid.UUID) -> StoredDocument:
        row = _usable(await conn.fetchrow(SELECT_FILE_STATE, file_id))
        log = await conn.fetch(SELECT_LOG, file_id)
        return StoredDocument(
            state=row["state"],
            updates=[r["update"] for r in log],
            content=row["content"],
            update_ids=tuple(r["id"] for r in log),
            generation=row["generation"],
        )

    async def load(self, file_id: uuid.UUID) -> StoredDocument:
        stored = await self._loads.ask(file_id)
        if stored is None:
            raise FileGone("no such document")
        return stored

    async def _load_many(
        self, file_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, StoredDocument]:
        async with self.db.acquire() as conn:
            rows = await conn.fetch(SELECT_DOCUMENTS, file_ids)
        found: dict[uuid.UUID, StoredDocument] = {}
        for row in rows:
            if row["type"] == "folder" or row["is_deleted"]:
                continue
            found[row["id"]] = StoredDocument(
                state=row["state"],
                updates=list(row["updates"] or ()),
                content=row["content"],
                update_ids=tuple(row["ids"] or ()),
                generation=row["generation"],
            )
        return found

    async def initialize(self, file_id: uuid.UUID, build: BuildFn) -> StoredDocument:
        async with self.db.service() as conn:
            await conn.execute(LOCK_FILE, file_id)
            stored = await self._read(conn, file_id)
            if stored.state is not None or stored.updates:
                return stored  # another process initialised it while we waited
            state, state_vector = build(stored.content or "")
            await conn.execute(INSERT_FIRST_STATE, file_id, state, state_vector)
            return StoredDocument(state, [], stored.content, (), 0)

    async def append_updates(self, rows: Sequence[tuple[uuid.UUID, bytes]]) -> list[int | None]:
        if not rows:
            return []
        result = await self._held.fetchrow(INSERT_LOG, [f for f, _ in rows], [u for _, u in rows])
        assert result is not None  # a select without from: always one row
        ids, skipped = result
        if not skipped:
            return list(ids)
        gone = set(skipped)
        new_ids = iter(ids)
        return [None if n in gone else next(new_ids) for n in range(1, len(rows) + 1)]

    async def compact(
        self, file_id: uuid.UUID, merge: MergeFn, *, editor: str | None = None
    ) -> Compaction | None:
        async with self.db.service() as conn:
            await conn.execute(LOCK_FILE, file_id)
            row = await conn.fetchrow(SELECT_FOR_COMPACTION, file_id)
            if row is None or row["type"] == "folder":
                return None
            ids: list[int] = row["ids"] or []
            updates: list[bytes] = row["updates"] or []
            # CPU-bound CRDT work off the event loop (see collab.hub.merge_document).
            merged = await asyncio.to_thread(merge, row["state"], updates)
            generation = await conn.fetchval(
                WRITE_COMPACTION, file_id, merged.state, merged.state_vector, merged.text,
                len(merged.text.encode("utf-8")), uuid.UUID(editor) if editor else None, ids,
            )
            return Compaction(merged.state, merged.text, tuple(ids), generation)

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
        # One statement, no transaction block: the function locks, checks and writes.
        written = await self._held.fetchval(
            COMPACT_LIVE, file_id, generation, list(own_ids), list(delete_ids),
            snapshot.state, snapshot.state_vector, snapshot.text,
            len(snapshot.text.encode("utf-8")), uuid.UUID(editor) if editor else None,
        )
        if written is None:
            return None
        return Compaction(snapshot.state, snapshot.text, tuple(delete_ids), written)

    async def compact_live_many(
        self, items: Sequence[LiveCompaction]
    ) -> list[Compaction | None]:
        if not items:
            return []
        rows = await self._held.fetch(
            COMPACT_LIVE_MANY,
            [i.file_id for i in items],
            [i.generation for i in items],
            [_int_array(i.own_ids) for i in items],
            [_int_array(i.delete_ids) for i in items],
            [i.snapshot.state for i in items],
            [i.snapshot.state_vector for i in items],
            [i.snapshot.text for i in items],
            [len(i.snapshot.text.encode("utf-8")) for i in items],
            [uuid.UUID(i.editor) if i.editor else None for i in items],
        )
        return [
            None if row[0] is None
            else Compaction(i.snapshot.state, i.snapshot.text, tuple(i.delete_ids), row[0])
            for i, row in zip(items, rows, strict=True)
        ]

    async def save_version(
        self,
        file_id: uuid.UUID,
        text: str,
        user_id: str | None,
        change_message: str | None,
        *,
        auto_bucket_s: float | None = None,
    ) -> dict[str, Any] | None:
        async with self.db.service() as conn:
            await conn.execute(LOCK_FILE, file_id)
            row = await conn.fetchrow(SELECT_FILE_STATE, file_id)
            if row is None or row["type"] == "folder":
                raise FileGone("no such document")
            if auto_bucket_s is not None:
                if await conn.fetchval(SELECT_LATEST_VERSION, file_id) == text:
                    return None
                if await conn.fetchval(SELECT_AUTO_VERSION_RECENT, file_id, auto_bucket_s):
                    return None
                await conn.execute(MARK_AUTO_VERSION, file_id)
            created = await conn.fetchrow(
                INSERT_VERSION,
                file_id,
                text,
                len(text.encode("utf-8")),
                uuid.UUID(user_id) if user_id else None,
                change_message,
            )
            return dict(created) if created is not None else None

    async def member_roles_version(self) -> int | None:
        version: int | None = await self._held.fetchval(SELECT_MEMBER_ROLES_VERSION)
        return version

    async def member_roles(
        self, pairs: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str | None]:
        if not pairs:
            return {}
        users = [uuid.UUID(u) for u, _ in pairs]
        workspaces = [w for _, w in pairs]
        async with self.db.acquire() as conn:
            rows = await conn.fetch(SELECT_MEMBER_ROLES, users, workspaces)
        return {(str(r["user_id"]), r["workspace_id"]): r["role"] for r in rows}
