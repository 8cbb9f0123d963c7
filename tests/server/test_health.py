"""The app serves /healthz with the database and schema state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from persistence.migrate import load_migrations
from tests.support.servers import LiveServer


async def test_healthz_reports_database_and_schema_version(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    latest = load_migrations()[-1].version if load_migrations() else None
    assert body["database"]["schema_version"] == latest
    assert body["broker"]["kind"] == "LocalBroker"
    assert body["jobs"]["listening"] is True  # the in-process background-jobs worker


async def test_unknown_route_is_a_json_404(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/nope") as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["error"]["code"] == "not_found"
