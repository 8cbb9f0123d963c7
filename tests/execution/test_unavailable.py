"""Without bubblewrap, runs and terminals say so: /healthz, a 503 with a code, a close code.

``BWRAP_PATH`` pointing at a binary that does not exist stands for a machine where
bubblewrap is not installed (nothing is removed from this one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import aiohttp

from persistence.db import Database
from server.auth.tokens import issue_access_token
from server.settings import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.support import factories
from tests.support.servers import LiveServer

MISSING = "/nonexistent/bin/bwrap"
REASON = f"bubblewrap ({MISSING}) not found: apt-get install bubblewrap"


async def test_missing_bubblewrap_is_reported_in_health_api_and_terminal_sockets(
    settings: Settings, live_server: Callable[..., Awaitable[LiveServer]], db: Database
) -> None:
    async with db.service() as conn:
        owner = await factories.create_user(conn)
        workspace = await factories.create_workspace(conn, owner)
        project = await factories.create_project(conn, workspace)
        main = await factories.create_file(conn, project, "main.py", "print('hi')\n")
    execution = dataclasses.replace(settings.execution, bwrap_path=MISSING)
    server = await live_server(dataclasses.replace(settings, execution=execution))
    token = issue_access_token(TEST_JWT_SECRET, str(owner), f"{owner}@example.test")
    headers = {"Authorization": f"Bearer {token}"}
    api = server.url + "/api/v1"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(server.url + "/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200
        assert health["status"] == "degraded"
        assert health["failing"] == ["executions", "terminals"]
        for part in ("executions", "terminals"):
            assert health[part]["ok"] is False
            assert health[part]["state"] == "unavailable"
            assert health[part]["reason"] == REASON

        for body in ({"language": "python", "source_code": "print(1)"}, {"file_id": str(main)}):
            async with http.post(f"{api}/projects/{project}/executions", json=body) as resp:
                assert resp.status == 503
                assert await resp.json() == {
                    "error": {"code": "sandbox_unavailable", "message": REASON}
                }
        async with http.get(f"{api}/languages") as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "sandbox_unavailable"

        url = f"{server.ws_url}/ws/projects/{project}/terminals/main?token={token}"
        async with http.ws_connect(url) as ws:
            msg = await ws.receive(10)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (4503, REASON)
    async with db.service() as conn:
        runs = await conn.fetchval(
            "select count(*) from public.code_executions where project_id = $1", project
        )
    assert runs == 0


async def test_present_bubblewrap_reports_execution_ok(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
        health = await resp.json()
    assert health["status"] == "ok" and health["failing"] == []
    assert health["executions"]["ok"] is True and health["executions"]["reason"] is None
    assert health["executions"]["state"] in ("unchecked", "ready")
    assert health["terminals"]["ok"] is True

