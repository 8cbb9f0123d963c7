"""Live preview: an edit in a document shows in the running preview within a stated time."""

from __future__ import annotations

import asyncio
import time

import pytest

from persistence.db import Database
from preview.runtime import PreviewKey
from tests.preview.apps import NODE_APP, STATIC_SITE
from tests.preview.conftest import Client, World, add_files

# The stated bound (docs/deployments.md): a static page within 1.5 s of the edit, a server
# app (restart included) within 3 s, on this shared 2-core machine.
BOUNDS = {"static": 1.5, "node": 3.0}


@pytest.mark.parametrize("kind", ["static", "node"])
async def test_an_edit_shows_in_the_preview_within_the_stated_time(
        client: Client, world: World, db: Database, kind: str) -> None:
    files, path, old, new = (
        (STATIC_SITE, "index.html", "hello static v1", "hello static v2") if kind == "static"
        else (NODE_APP, "server.js", "hello node v1", "hello node v2"))
    ids = await add_files(db, world.project, files)
    row = await client.deploy(world.member, world.project)
    assert (await client.wait(world.member, world.project, row["id"]))["status"] == "success"
    cookie = await client.session_cookie(world.member, world.project)
    assert old in (await client.get(world.project, "/", cookie=cookie))[1]

    documents = client.server.app.state.services.documents
    started = time.monotonic()
    await documents.write_text(ids[path], files[path].replace(old, new), world.member)
    while True:
        status, text = await client.get(world.project, "/", cookie=cookie)
        # Restarts are blue/green: the preview answers all along, never 502/503 or cut.
        assert status == 200, text
        if new in text:
            break
        assert time.monotonic() - started < BOUNDS[kind], f"still {status} {text[:80]!r}"
        await asyncio.sleep(0.02)
    running = client.previews.runtime.running(PreviewKey(world.project, "development"))
    assert running is not None and running.version >= 2
