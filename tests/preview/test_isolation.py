"""A preview is alone in its network namespace: no host port, no database, no other preview."""

from __future__ import annotations

from urllib.parse import urlsplit

from persistence.db import Database
from preview.runtime import PreviewKey, label_of
from tests.preview.apps import NODE_APP
from tests.preview.conftest import Client, World, add_files


async def test_a_preview_reaches_neither_the_host_nor_another_preview(
        client: Client, world: World, db: Database, database_url: str, redis_url: str) -> None:
    await add_files(db, world.project, NODE_APP)
    await add_files(db, world.other_project, NODE_APP)
    mine = await client.deploy(world.member, world.project)
    theirs = await client.deploy(world.stranger, world.other_project)
    for user, project, row in ((world.member, world.project, mine),
                               (world.stranger, world.other_project, theirs)):
        assert (await client.wait(user, project, row["id"]))["status"] == "success"
    cookie = await client.session_cookie(world.member, world.project)

    async def probe(path: str) -> str:
        status, text = await client.get(world.project, path, cookie=cookie)
        assert status == 200, text
        return text

    # Only loopback exists in the preview's namespace.
    assert await probe("/interfaces") == "lo"
    database = urlsplit(database_url)
    redis = urlsplit(redis_url)
    targets = [
        (database.hostname, database.port or 5432),   # the host's PostgreSQL
        (redis.hostname, redis.port or 6379),         # the host's Redis
        ("127.0.0.1", client.origin_port),            # the preview origin itself
        ("127.0.0.1", client.server.port),            # the IDE's server
    ]
    for host, port in targets:
        answer = await probe(f"/probe?host={host}&port={port}")
        assert answer.startswith("error"), (host, port, answer)
    # 127.0.0.1:8080 is the app itself: its own loopback, not another preview's.
    assert await probe("/probe?host=127.0.0.1&port=8080") == "open"
    # The other preview's socket (and every preview's files) are not in the sandbox.
    other_socket = client.previews.runtime.socket(PreviewKey(world.other_project, "development"))
    assert other_socket.exists()
    assert await probe(f"/exists?path={other_socket}") == "false"
    assert await probe(f"/exists?path={client.previews.runtime.root}") == "false"
    assert await probe("/exists?path=/run/icreate/s") == "true"  # its own relay's socket
    # The other project's host name with this project's session: refused.
    status, _ = await client.get(world.other_project, "/", cookie=cookie)
    assert status == 401
    assert label_of(PreviewKey(world.project, "development")) in client.host(world.project)
