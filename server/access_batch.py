"""Document sockets' access checks, answered together: one query for every check waiting.

After a restart every stock client reconnects at once, and one role query per socket was
the largest part of the accept path. Checks are grouped (persistence/grouped.py): each is
answered by a query that started after it was asked, nothing is cached, so a role removed
before a socket connected is seen as removed, as with a query per socket. The token is
verified per socket before (server/ws_auth.py).
"""

from __future__ import annotations

import uuid

from prometheus_client import Counter

from persistence.db import Database
from persistence.grouped import Grouped
from server.access import Access, file_from_row

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
    """``file_access`` for many sockets at once (``check``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._grouped: Grouped[Key, Access] = Grouped(self._answer, name="file-access-checks")

    @property
    def queries(self) -> int:
        return self._grouped.queries

    async def stop(self) -> None:
        await self._grouped.stop()

    async def check(self, user_id: str, file_id: uuid.UUID) -> Access | None:
        """The caller's access to the file (None: no such file), as ``file_access``."""
        CHECKS.inc()
        return await self._grouped.ask((uuid.UUID(user_id), file_id))

    async def _answer(self, keys: list[Key]) -> dict[Key, Access]:
        QUERIES.inc()
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                SELECT_FILE_ACCESS_MANY, [f for _, f in keys], [u for u, _ in keys]
            )
        found: dict[Key, Access] = {}
        for row in rows:
            access = file_from_row(row)
            if access is not None:
                found[(row["asker"], row["file_id"])] = access
        return found
