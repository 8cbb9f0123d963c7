"""The hot reads (file content, tree listing, project open), each one statement now
(persistence/hot_reads.py): members read, others get 404, RLS still decides what the read
returns, and every request still has its api_logs row. Also the API's route index
(server/api/__init__.py) picks the route Starlette's router would."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import aiohttp
from starlette.routing import Match, Route

from persistence.db import Database
from server.api import ApiApp, IndexedRouter, _route_path, _shape
from server.settings import Settings
from tests.api.client import Api
from tests.support import factories
from tests.support.observability import eventually, observed, rows
from tests.support.servers import LiveServer

HIDE_SECRETS = """
create policy hide_secrets on public.files as restrictive for select to authenticated
using (name <> 'secret.py')
"""
LOGGED = """
select endpoint, status_code, user_id::text as user_id from public.api_logs
where method = 'GET'
  and endpoint in ('/api/v1/files/{file_id}', '/api/v1/projects/{project_id}/files',
                   '/api/v1/projects/{project_id}')
"""


async def test_hot_reads_check_access_keep_rls_and_log_every_request(
    settings: Settings, db: Database, live_server: Callable[..., Awaitable[LiveServer]]
) -> None:
    server = await live_server(observed(settings))
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.url)
        owner, viewer, outsider = await api.sign_up(), await api.sign_up(), await api.sign_up()
        ws = await api.ok("POST", "/workspaces", {"name": "Hot"}, token=owner.token)
        project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "Hot"},
                               token=owner.token)
        pid = project["id"]
        main = await api.ok("POST", f"/projects/{pid}/files",
                            {"path": "main.py", "content": "print('hot')\n"}, token=owner.token)
        secret = await api.ok("POST", f"/projects/{pid}/files",
                              {"path": "secret.py", "content": "key = 1\n"}, token=owner.token)
        async with db.acquire() as conn:
            await factories.add_member(conn, uuid.UUID(ws["id"]), uuid.UUID(viewer.id),
                                       "viewer")

        expected: list[tuple[str, int, str]] = []

        async def get(path: str, user_id: str, token: str, status: int) -> object:
            reply = await api.call("GET", path, token=token)
            assert reply.status == status, (path, reply.status, reply.body)
            template = "/api/v1/files/{file_id}" if path.startswith("/files/") else (
                "/api/v1/projects/{project_id}/files" if path.endswith("/files")
                else "/api/v1/projects/{project_id}")
            expected.append((template, status, user_id))
            return reply.body

        for user in (owner, viewer):
            body = await get(f"/files/{main['id']}", user.id, user.token, 200)
            assert isinstance(body, dict) and body["content"] == "print('hot')\n"
            assert "access_role" not in body and "logged" not in body
            tree = await get(f"/projects/{pid}/files", user.id, user.token, 200)
            assert isinstance(tree, dict)
            assert [f["path"] for f in tree["items"]] == ["main.py", "secret.py"]
            opened = await get(f"/projects/{pid}", user.id, user.token, 200)
            assert isinstance(opened, dict) and opened["id"] == pid
        # Another user's file, tree and project: not found, as for ids that do not exist.
        for path in (f"/files/{main['id']}", f"/projects/{pid}/files", f"/projects/{pid}",
                     f"/files/{uuid.uuid4()}", f"/projects/{uuid.uuid4()}"):
            await get(path, outsider.id, outsider.token, 404)

        # The check passes (a member) but the read runs as the user under RLS: a file that
        # a policy hides is not served, and not listed.
        async with db.acquire() as conn:
            await conn.execute(HIDE_SECRETS)
        await get(f"/files/{secret['id']}", viewer.id, viewer.token, 404)
        tree = await get(f"/projects/{pid}/files", viewer.id, viewer.token, 200)
        assert isinstance(tree, dict) and [f["path"] for f in tree["items"]] == ["main.py"]

    logged = await eventually(
        lambda: rows(db, LOGGED), lambda found: len(found) >= len(expected),
        what=f"{len(expected)} api_logs rows",
    )
    assert sorted((r["endpoint"], r["status_code"], r["user_id"]) for r in logged) == sorted(
        expected)


def test_the_route_index_picks_the_route_the_router_would() -> None:
    api = ApiApp()
    indexed = IndexedRouter(api.router)
    routes = [r for r in api.router.routes if isinstance(r, Route)]
    assert indexed.index  # the API's routes are indexed
    for route in routes:
        path = "/api/v1" + route.path.replace("{version_number}", "3").replace(
            "{provider}", "github")
        for name in route.param_convertors:
            path = path.replace("{" + name + "}", str(uuid.uuid4()))
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "/api/v1"}
        first = next(r for r in routes if r.matches(scope)[0] is Match.FULL)
        candidates = indexed.index.get(_shape(_route_path(scope)), [])
        chosen = next((r for r in candidates if r.matches(scope)[0] is Match.FULL), None)
        assert chosen is first, (path, route.path)
    # Paths of no indexed shape are left to the router (its 404 and slash redirects).
    for path in ("/api/v1/files", "/api/v1/files/x/", "/api/v1/nowhere/x"):
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "/api/v1"}
        candidates = indexed.index.get(_shape(_route_path(scope)), [])
        assert not any(r.matches(scope)[0] is Match.FULL for r in candidates)
