"""Document sockets' access checks, answered together: one query for every check waiting.

After a restart every stock client reconnects in the same few milliseconds (y-websocket's
backoff has no jitter), and one role query per socket was the largest part of the accept
path (thousands of round trips, each a backend wake-up on the server's core). Checks are
grouped like a group commit: while one query runs, new checks wait for the next, which
asks for all of them at once (a (user, file) pair asked twice in one group is read once).

Nothing is cached: every check is answered by a query that started after it was asked, so
a role removed before a socket connected is seen as removed, as with a query per socket.
The token is verified per socket before (server/ws_auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from prometheus_client import Counter

from persistence.db import Database
from server.access import Access, file_from_row

# Checks per query: a query's parameters and result stay small, and a long group waits
# for no more than one such query.
MAX_BATCH = 1000

SELECT_FILE_ACCESS_MANY = """
select k.user_id as asker, p.workspace_id, p.id as project_id, f.id as file_id, f.type,
       f.is_deleted, m.role, f.storage_path is not null as stored
from unnest($1::uuid[], $2::uuid[]) k(file_id, user_id)
join public.files f on f.id = k.file_id
join public.projects p on p.id = f.project_id
left join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = k.user_id
"""

Key = tuple[uuid.UUID, uuid.UUID]  # (user, file)

CHECKS = Counter("icreate_doc_access_checks", "Document sockets' access checks asked")
QUERIES = Counter("icreate_doc_access_queries", "Queries that answered them (one per group)")


class FileAccessBatch:
    """``file_access`` for many sockets at once (``check``); owns the task that queries."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._waiting: dict[Key, asyncio.Future[Access | None]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self.queries = 0  # queries made (tests count them)

    async def start(self) -> None:
        self._stopped = False

    async def stop(self) -> None:
        self._stopped = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def check(self, user_id: str, file_id: uuid.UUID) -> Access | None:
        """The caller's access to the file (None: no such file), as ``file_access``."""
        if self._stopped:
            raise RuntimeError("access checks are stopped")
        key = (uuid.UUID(user_id), file_id)
        CHECKS.inc()
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="file-access-batch")
        # Shielded: a socket that goes away must not cancel the answer others wait for.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._waiting:
                # Checks asked in this loop iteration join the group (the task starts after
                # every callback ready now has run).
                await asyncio.sleep(0)
                group = dict(list(self._waiting.items())[: self.max_batch])
                for key in group:
                    del self._waiting[key]
                await self._answer(group)
        finally:
            self._runner = None

    async def _answer(self, group: dict[Key, asyncio.Future[Access | None]]) -> None:
        keys = list(group)
        self.queries += 1
        QUERIES.inc()
        try:
            async with self.db.acquire() as conn:
                rows = await conn.fetch(
                    SELECT_FILE_ACCESS_MANY, [f for _, f in keys], [u for u, _ in keys]
                )
        except asyncio.CancelledError:
            for future in group.values():
                future.cancel()
            raise
        except Exception as exc:  # each socket's handler reports it, as with its own query
            for future in group.values():
                if not future.done():
                    future.set_exception(exc)
            return
        found = {(row["asker"], row["file_id"]): file_from_row(row) for row in rows}
        for key, future in group.items():
            if not future.done():
                future.set_result(found.get(key))
