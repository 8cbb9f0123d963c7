"""api_logs: one row per REST request, written in batches off the request path, and never a
credential in any column (tokens in the query or header, passwords in bodies)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp

from observability.api_log import ApiLogWriter
from persistence.db import Database
from server.settings import Settings
from tests.api.client import PASSWORD, Api
from tests.support.observability import eventually, observed, rows
from tests.support.servers import LiveServer

QUERY_SECRET = "qs-secret-" + uuid.uuid4().hex
ALL_COLUMNS = "select row_to_json(a)::text as row from public.api_logs a"


async def test_requests_are_logged_without_credentials(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await live_server(observed(settings))
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        user = await api.sign_up()
        workspace = await api.ok("POST", "/workspaces", {"name": "Logged"}, token=user.token)
        # The access token in the header and again in credential query parameters.
        reply = await api.call(
            "GET", f"/workspaces/{workspace['id']}", token=user.token,
            params={"access_token": user.token, "token": QUERY_SECRET, "api_key": QUERY_SECRET},
            headers={"User-Agent": "obs-test/1.0"},
        )
        assert reply.status == 200
        signin = await api.sign_in(user.email)  # a password in the body
        assert signin.status == 200
        refresh = await api.call(
            "POST", "/auth/refresh", {"refresh_token": user.refresh_token}
        )
        assert refresh.status == 200
        # No such route, with a token in the path itself.
        missing = await api.call("GET", f"/nowhere/{user.token}")
        assert missing.status == 404

    logged = await eventually(
        lambda: rows(db, "select * from public.api_logs order by created_at"),
        lambda found: len(found) >= 6, what="6 api_logs rows",
    )
    by_endpoint = {(r["method"], r["endpoint"]): r for r in logged}
    read = by_endpoint[("GET", "/api/v1/workspaces/{workspace_id}")]
    assert read["status_code"] == 200
    assert str(read["user_id"]) == user.id
    assert str(read["workspace_id"]) == workspace["id"]
    assert str(read["ip_address"]) == "127.0.0.1"
    assert read["user_agent"] == "obs-test/1.0"
    assert read["duration_ms"] >= 0 and read["response_bytes"] > 0
    created = by_endpoint[("POST", "/api/v1/workspaces")]
    assert created["status_code"] == 201 and created["request_bytes"] == len(b'{"name": "Logged"}')
    assert by_endpoint[("POST", "/api/v1/auth/signin")]["status_code"] == 200
    assert by_endpoint[("GET", "unmatched")]["status_code"] == 404
    assert all(r["request_body"] is None and r["response_body"] is None for r in logged)

    dumped = "\n".join(r["row"] for r in await rows(db, ALL_COLUMNS))
    for secret in (user.token, user.refresh_token, QUERY_SECRET, PASSWORD, "Bearer"):
        assert secret not in dumped
    refreshed_token = refresh.body["access_token"]
    assert refreshed_token not in dumped


async def test_api_logs_off_writes_nothing(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await live_server(observed(settings, api_logs=False))
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        user = await api.sign_up()
        await api.ok("GET", "/me", token=user.token)
    await server.stop()  # a final flush would have written anything buffered
    assert await rows(db, "select 1 from public.api_logs") == []


async def test_a_full_buffer_drops_and_counts(
    db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await live_server()
    writer = ApiLogWriter(db, capacity=2, batch=10, flush_s=60)
    # Stamped now: a 1970 row would sit past the retention, and the maintenance job the
    # server runs may delete it from the default partition before the count below.
    entry = (time.time(), None, None, "/api/v1/me", "GET", 200, 1, "127.0.0.1", None, 0, 2)

    async def dropped() -> float:
        async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as r:
            text = await r.text()
        line = next(ln for ln in text.splitlines()
                    if ln.startswith('icreate_api_logs_dropped_total{reason="buffer_full"}'))
        return float(line.split()[-1])

    before = await dropped()
    for _ in range(3):
        writer.append(entry)
    assert writer.pending == 2
    assert await dropped() == before + 1
    await writer.stop()  # writes the two it kept
    assert len(await rows(db, "select 1 from public.api_logs where endpoint = '/api/v1/me'")) == 2
