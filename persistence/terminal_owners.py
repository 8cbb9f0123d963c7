"""``terminal_owners`` (sql/0210): which node runs each shared terminal, under a lease.

A node claims a terminal when none runs or its owner's lease ran out, renews the leases of
the terminals it runs (re-creating a row a race removed), and drops its rows when their
shells end or it stops.
"""

from __future__ import annotations

import uuid

import asyncpg

# Takes the row when it is free, already ours, or its lease ran out; returns the owner.
CLAIM = """
insert into public.terminal_owners (project_id, name, node_id, lease_until)
values ($1, $2, $3, now() + make_interval(secs => $4))
on conflict (project_id, name) do update
set node_id = excluded.node_id, lease_until = excluded.lease_until
where terminal_owners.node_id = excluded.node_id or terminal_owners.lease_until < now()
returning node_id
"""
SELECT_LIVE_OWNER = """
select node_id from public.terminal_owners
where project_id = $1 and name = $2 and lease_until >= now()
"""
# Renews (or takes back, if still free) the rows of the terminals this node runs.
RENEW_MANY = """
insert into public.terminal_owners (project_id, name, node_id, lease_until)
select k.p, k.n, $1, now() + make_interval(secs => $4)
from unnest($2::uuid[], $3::text[]) k(p, n)
where exists (select 1 from public.projects where id = k.p)
on conflict (project_id, name) do update
set node_id = excluded.node_id, lease_until = excluded.lease_until
where terminal_owners.node_id = excluded.node_id or terminal_owners.lease_until < now()
"""
RELEASE_MANY = """
delete from public.terminal_owners t
using unnest($2::uuid[], $3::text[]) k(p, n)
where t.node_id = $1 and t.project_id = k.p and t.name = k.n
"""
RELEASE_NODE = "delete from public.terminal_owners where node_id = $1"

Key = tuple[uuid.UUID, str]


async def claim(
    conn: asyncpg.Connection, project_id: uuid.UUID, name: str, node_id: str, lease_s: float
) -> str | None:
    """This node when it now owns the terminal, else the live owner (None: lost a race)."""
    owner: str | None = await conn.fetchval(CLAIM, project_id, name, node_id, lease_s)
    if owner is not None:
        return owner
    return await live_owner(conn, project_id, name)


async def live_owner(conn: asyncpg.Connection, project_id: uuid.UUID, name: str) -> str | None:
    owner: str | None = await conn.fetchval(SELECT_LIVE_OWNER, project_id, name)
    return owner


async def renew(conn: asyncpg.Connection, node_id: str, keys: list[Key], lease_s: float) -> None:
    await conn.execute(RENEW_MANY, node_id, [k[0] for k in keys], [k[1] for k in keys], lease_s)


async def release(conn: asyncpg.Connection, node_id: str, keys: list[Key]) -> None:
    await conn.execute(RELEASE_MANY, node_id, [k[0] for k in keys], [k[1] for k in keys])


async def release_node(conn: asyncpg.Connection, node_id: str) -> None:
    await conn.execute(RELEASE_NODE, node_id)
