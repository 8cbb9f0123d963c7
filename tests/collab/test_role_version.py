"""Role checks against PostgreSQL read the membership version, and the roles when it moved."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from broker.local import LocalBroker
from collab.config import CollabConfig
from collab.hub import DocumentHub
from persistence.documents import PostgresDocumentStore
from tests.collab.conftest import DocWorld
from tests.collab.peers import ClientPeer
from tests.collab.test_hub import eventually


class CountingRolesStore(PostgresDocumentStore):
    role_reads = 0
    version_reads = 0

    async def member_roles_version(self) -> int | None:
        self.version_reads += 1
        return await super().member_roles_version()

    async def member_roles(
        self, pairs: Sequence[tuple[str, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], str | None]:
        self.role_reads += 1
        return await super().member_roles(pairs)


async def test_roles_are_read_again_only_when_memberships_change(world: DocWorld) -> None:
    store = CountingRolesStore(world.db)
    broker = LocalBroker("solo")
    await broker.start()
    hub = DocumentHub(store, broker, CollabConfig(role_check_s=0.05))
    await hub.start()
    try:
        file_id = await world.new_file("x")
        editor = await world.new_user("member")
        other = await world.new_user("member")
        peer = ClientPeer(str(editor), workspace_id=world.workspace_id)
        room = await hub.join(file_id, peer)
        hub.receive(room, peer, peer.step1())
        await eventually(lambda: store.role_reads >= 1)
        ticks = store.version_reads
        await eventually(lambda: store.version_reads >= ticks + 10)  # ten more checks
        assert store.role_reads == 1  # nothing changed: the roles were not read again

        # Someone else's membership changes: the roles are read once more, ours is intact.
        async with world.db.acquire() as conn:
            await conn.execute(
                "update public.workspace_members set role = 'viewer' where user_id = $1", other
            )
        await eventually(lambda: store.role_reads == 2)
        assert not peer.read_only and not peer.closed

        # Ours changes: demoted within a tick or two, then removed and closed with 4403.
        async with world.db.acquire() as conn:
            await conn.execute(
                "update public.workspace_members set role = 'viewer' where user_id = $1", editor
            )
        await eventually(lambda: peer.read_only, timeout=1)
        async with world.db.acquire() as conn:
            await conn.execute("delete from public.workspace_members where user_id = $1", editor)
        await eventually(lambda: peer.close_code == 4403, timeout=1)
    finally:
        await hub.stop()
        await broker.close()
