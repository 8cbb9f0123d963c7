"""The asyncpg pool and the two ways of using it: as the service, or as a user under RLS.

Queries made for a user run as the ``authenticated`` role with the user's JWT claims
in ``request.jwt.claims`` (what Supabase and PostgREST do), so row-level security
decides what they see even if a ``WHERE`` is missing in Python.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

SET_USER_CONTEXT = """
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', $1, true),
       set_config('request.jwt.claim.sub', $2, true)
"""

def dsn_with_database(dsn: str, database: str) -> str:
    """The same server address with another database name (keeps ``?host=`` sockets)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in {"dbname", "database"}]
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + database, urlencode(query), parts.fragment)
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb/json come back as Python objects and go in from dicts and lists.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (a round trip per acquire).

    asyncpg still rolls back a transaction left open. Nothing else needs resetting: every
    setting this code makes is transaction-local (``set_config(..., true)``), locks are
    ``pg_advisory_xact_lock`` and nothing LISTENs on pooled connections (the migration
    runner's session lock is on a connection of its own).
    """


# Told the elapsed seconds of every query made on the pool (asyncpg's query logger, called
# on the event loop soon after the query; COPY is not timed).
QueryObserver = Callable[[float], None]


class Database:
    """Owns the pool; hands out transactions for the service or for a user."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Whoever keeps a pooled connection checked out gives it back here first, or
        # closing the pool would wait for it.
        self._before_close: list[Callable[[], Awaitable[None]]] = []

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._before_close.append(callback)

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 2, max_size: int = 10,
        on_query: QueryObserver | None = None,
    ) -> Database:
        async def init(conn: asyncpg.Connection) -> None:
            await _init_connection(conn)
            if on_query is not None:
                conn.add_query_logger(lambda query: on_query(query.elapsed))

        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=init, reset=_keep_session,
        )
        return cls(pool)

    async def close(self) -> None:
        for callback in self._before_close:
            await callback()
        await self.pool.close()

    @asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection as the service, outside any transaction."""
        async with self.pool.acquire(timeout=timeout) as conn:
            yield cast(asyncpg.Connection, conn)

    @asynccontextmanager
    async def service(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as the connecting role (service: bypasses RLS on our own pool)."""
        async with self.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def as_user(
        self, user_id: str, claims: Mapping[str, Any] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as ``authenticated`` with the user's claims; RLS applies."""
        full_claims = {"sub": user_id, "role": "authenticated", **(claims or {})}
        async with self.acquire() as conn, conn.transaction():
            await conn.execute(SET_USER_CONTEXT, json.dumps(full_claims), user_id)
            yield conn
