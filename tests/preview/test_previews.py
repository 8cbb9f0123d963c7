"""The three kinds of app build and answer through the preview origin, by project role."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp

from persistence.db import Database
from server.settings import Settings
from tests.preview.apps import NODE_APP, PYTHON_APP, STATIC_SITE
from tests.preview.conftest import Client, StartServer, World, add_files


async def test_static_site_answers_through_the_preview_origin(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, STATIC_SITE)
    row = await client.deploy(world.member, world.project)
    assert row["status"] == "pending" and row["created"] is True
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "success", done["logs"]
    assert done["deploy_url"] == f"http://{client.host(world.project)}/"
    assert done["build_time_ms"] > 0 and "static app" in done["logs"]

    cookie = await client.session_cookie(world.viewer, world.project)
    assert await client.get(world.project, "/", cookie=cookie) == (
        200, STATIC_SITE["index.html"])
    status, css = await client.get(world.project, "/css/site.css", cookie=cookie)
    assert (status, css) == (200, STATIC_SITE["css/site.css"])


async def test_a_private_preview_needs_a_members_session(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, STATIC_SITE)
    row = await client.deploy(world.owner, world.project)
    await client.wait(world.owner, world.project, row["id"])
    status, text = await client.get(world.project, "/")
    assert status == 401 and "private" in text
    # Someone outside the workspace gets no ticket ...
    status, _body = await client.api("POST", f"/projects/{world.project}/preview-sessions",
                                    world.stranger, {})
    assert status == 404
    # ... and a session for another project's preview does not open this one.
    other_cookie = await client.session_cookie(world.stranger, world.other_project)
    assert (await client.get(world.project, "/", cookie=other_cookie))[0] == 401
    # A forged or expired ticket is refused.
    async with client.http.get(client.url("/__icreate/session?ticket=nope"),
                               headers={"Host": client.host(world.project)}) as reply:
        assert reply.status == 401
    # Public: anyone (a member may not decide that; an admin may).
    status, _ = await client.api("PUT", f"/projects/{world.project}/preview-access",
                                 world.member, {"public": True})
    assert status == 403
    status, _ = await client.api("PUT", f"/projects/{world.project}/preview-access",
                                 world.owner, {"public": True})
    assert status == 200
    client.previews.proxy._access.clear()  # the 10 s access cache
    assert (await client.get(world.project, "/"))[0] == 200


async def test_node_app_streams_and_echoes_through_the_preview_origin(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, NODE_APP)
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "success", done["logs"]
    cookie = await client.session_cookie(world.member, world.project)
    assert await client.get(world.project, "/", cookie=cookie) == (200, "hello node v1")
    headers = {"Host": client.host(world.project), "Cookie": cookie + "; theirs=kept"}
    chunks = []
    async with client.http.get(client.url("/stream"), headers=headers) as reply:
        async for chunk in reply.content.iter_any():
            chunks.append(chunk)
    assert b"".join(chunks) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert len(chunks) >= 2  # streamed, not buffered into one body
    body = b"x" * 300_000
    async with client.http.post(client.url("/echo"), headers=headers, data=body) as reply:
        assert reply.status == 200 and await reply.read() == body
    # The app sees its own cookies, never the preview session.
    async with client.http.get(client.url("/headers"), headers=headers) as reply:
        seen = await reply.json()
    assert seen["cookie"] == "theirs=kept"
    assert seen["host"] == client.host(world.project)


async def test_python_starlette_app_answers_http_and_websocket(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, PYTHON_APP)
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"], timeout=180)
    assert done["status"] == "success", done["logs"]
    assert "pip install starlette uvicorn websockets" in done["logs"]
    cookie = await client.session_cookie(world.member, world.project)
    assert await client.get(world.project, "/", cookie=cookie) == (200, "hello python v1")
    async with client.http.ws_connect(
            f"ws://127.0.0.1:{client.origin_port}/ws",
            headers={"Host": client.host(world.project), "Cookie": cookie}) as ws:
        await ws.send_str("hi")
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT and message.data == "echo: hi"
    # Without a session the socket is refused.
    async with client.http.ws_connect(
            f"ws://127.0.0.1:{client.origin_port}/ws",
            headers={"Host": client.host(world.project)}) as ws:
        closed = await ws.receive(timeout=10)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4401


async def test_a_new_deployment_replaces_the_running_preview(
        client: Client, world: World, db: Database) -> None:
    ids = await add_files(db, world.project, NODE_APP)
    first = await client.deploy(world.member, world.project)
    await client.wait(world.member, world.project, first["id"])
    old = client.previews.runtime.running(_key(world))
    assert old is not None and old.process.alive
    documents = client.server.app.state.services.documents
    await documents.write_text(ids["server.js"], NODE_APP["server.js"].replace("v1", "v2"),
                               world.member)
    second = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, second["id"])
    assert done["status"] == "success"
    cookie = await client.session_cookie(world.member, world.project)
    assert await client.get(world.project, "/", cookie=cookie) == (200, "hello node v2")
    assert not old.process.alive  # one running preview per project and environment
    current = client.previews.runtime.running(_key(world))
    assert current is not None and str(current.deployment_id) == second["id"]


def _key(world: World):  # type: ignore[no-untyped-def]
    from preview.runtime import PreviewKey

    return PreviewKey(world.project, "development")


async def test_an_idle_preview_is_stopped_and_says_so(
        live_server: StartServer, preview_settings: Settings, world: World,
        db: Database) -> None:
    settings = dataclasses.replace(preview_settings, preview=dataclasses.replace(
        preview_settings.preview, idle_stop_s=1.0))
    server = await live_server(settings)
    await add_files(db, world.project, NODE_APP)
    async with aiohttp.ClientSession() as http:
        client = Client(server, http)
        row = await client.deploy(world.member, world.project)
        assert (await client.wait(world.member, world.project, row["id"]))["status"] == "success"
        cookie = await client.session_cookie(world.member, world.project)
        running = client.previews.runtime.running(_key(world))
        assert running is not None
        for _ in range(6):  # requests keep it alive
            assert (await client.get(world.project, "/", cookie=cookie))[0] == 200
            await asyncio.sleep(0.4)
        assert running.process.alive
        deadline = time.monotonic() + 10
        while client.previews.runtime.running(_key(world)) is not None:
            assert time.monotonic() < deadline, "an idle preview was not stopped"
            await asyncio.sleep(0.2)
        assert not running.process.alive
        status, text = await client.get(world.project, "/", cookie=cookie)
        assert status == 503 and "not running" in text
