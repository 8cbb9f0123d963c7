"""server/membership.py in one process: two nodes on one LocalBus and the real database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from broker.local import LocalBroker, LocalBus
from persistence.db import Database
from server.membership import Membership
from tests.support import factories


@pytest.fixture
async def two_nodes(db: Database) -> AsyncIterator[tuple[Membership, Membership]]:
    bus = LocalBus()
    brokers = [LocalBroker(name, bus) for name in ("node-a", "node-b")]
    nodes = [Membership(db, broker, fallback_s=3600) for broker in brokers]
    for broker, node in zip(brokers, nodes, strict=True):
        await broker.start()
        await node.start()
    yield nodes[0], nodes[1]
    for broker, node in zip(brokers, nodes, strict=True):
        await node.stop()
        await broker.close()


async def _world(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        member = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, workspace, member, "member")
    return workspace, member


async def test_a_change_reaches_the_tickets_of_that_user_on_the_other_node_once_per_key(
    db: Database, two_nodes: tuple[Membership, Membership]
) -> None:
    here, there = two_nodes
    workspace, member = await _world(db)
    seen: list[tuple[str, str | None]] = []
    hub_checks: list[str | None] = []
    for kind in ("document", "terminal"):
        await there.track(member, workspace, kind, "member",
                          lambda role, kind=kind: seen.append((kind, role)))
    # Two project sockets share one hub-wide check.
    for _ in range(2):
        await there.track(member, workspace, "project", "member", hub_checks.append,
                          once_key="project-hub")
    async with db.service() as conn:
        await conn.execute("update public.workspace_members set role = 'viewer' "
                           "where workspace_id = $1 and user_id = $2", workspace, member)
    await here.announce(workspace, member, "member.updated", "viewer")
    assert sorted(seen, key=str) == [("document", "viewer"), ("terminal", "viewer")]
    assert hub_checks == ["viewer"]
    # The same role again changes nothing; a removal does.
    await here.announce(workspace, member, "member.updated", "viewer")
    assert len(seen) == 2
    async with db.service() as conn:
        await conn.execute("delete from public.workspace_members "
                           "where workspace_id = $1 and user_id = $2", workspace, member)
    await here.announce(workspace, member, "member.removed", None)
    assert sorted(seen[2:], key=str) == [("document", None), ("terminal", None)]
    assert hub_checks == ["viewer", None]


async def test_released_tickets_are_left_alone_and_idle_workspaces_unsubscribed(
    db: Database, two_nodes: tuple[Membership, Membership]
) -> None:
    here, there = two_nodes
    workspace, member = await _world(db)
    seen: list[str | None] = []
    ticket = await there.track(member, workspace, "chat", "member", seen.append)
    assert there.health()["workspaces"] == 1
    there.release(ticket)
    async with db.service() as conn:
        await conn.execute("delete from public.workspace_members "
                           "where workspace_id = $1 and user_id = $2", workspace, member)
    await here.announce(workspace, member, "member.removed", None)
    assert seen == []
    await there.recheck_all()
    await there._unsubscribe_idle()
    assert there.health()["workspaces"] == 0


async def test_the_fallback_reads_every_ticket_in_one_pass(
    db: Database, two_nodes: tuple[Membership, Membership]
) -> None:
    _here, there = two_nodes
    workspace, member = await _world(db)
    seen: list[str | None] = []
    await there.track(member, workspace, "terminal", "member", seen.append)
    async with db.service() as conn:  # no announcement: only the fallback can see it
        await conn.execute("delete from public.workspace_members "
                           "where workspace_id = $1 and user_id = $2", workspace, member)
    await there.recheck_all()
    assert seen == [None]
