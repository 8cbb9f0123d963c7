"""/healthz reports what works (degraded naming what does not); /readyz gates traffic."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg

from persistence.db import Database
from persistence.migrate import load_migrations
from tests.support.databases import PostgresForTests
from tests.support.servers import LiveServer


async def test_healthz_reports_database_and_schema_version(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok" and body["failing"] == []
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


async def test_readyz_is_200_when_the_database_answers_and_the_schema_is_current(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ready": True}


async def test_pending_migration_makes_health_degraded_and_readiness_503(
    live_server: Callable[..., Awaitable[LiveServer]], db: Database
) -> None:
    server = await live_server()
    async with db.service() as conn:
        latest = await conn.fetchval(
            "delete from public.schema_migrations where version = "
            "(select max(version) from public.schema_migrations) returning version"
        )
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/readyz") as resp:
            assert resp.status == 503
            assert await resp.json() == {
                "ready": False, "reasons": [f"migrations pending: {latest}"]
            }
        async with session.get(server.url + "/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["status"] == "degraded" and body["failing"] == ["database"]
    assert body["database"]["pending"] == [latest]


async def test_database_down_makes_health_unavailable_and_readiness_503_until_it_returns(
    live_server: Callable[..., Awaitable[LiveServer]],
    postgres: PostgresForTests,
    database_url: str,
) -> None:
    server = await live_server()
    name = database_url.split("?")[0].rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres.admin_dsn)
    try:
        await admin.execute(f'alter database "{name}" allow_connections false')
        await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", name
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["ready"] is False
            assert body["reasons"][0].startswith("database unreachable")
            async with session.get(server.url + "/healthz") as resp:
                assert resp.status == 503
                health = await resp.json()
            assert health["status"] == "unavailable" and "database" in health["failing"]

            await admin.execute(f'alter database "{name}" allow_connections true')
            async with session.get(server.url + "/readyz") as resp:
                assert resp.status == 200
    finally:
        await admin.execute(f'alter database "{name}" allow_connections true')
        await admin.close()
