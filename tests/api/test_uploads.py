"""Files as bytes: streamed uploads (text becomes a document, the rest a stored object),
size limits, downloads, and stored objects never becoming CRDT documents."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from multidict import CIMultiDict

from persistence.db import Database
from server.settings import Settings
from storage.objects import key_of
from tests.api.client import Api, User
from tests.collab.node_agent import NodeAgent, wait_for, wait_until
from tests.support.servers import LiveServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
OCTETS = {"Content-Type": "application/octet-stream"}


async def _project(api: Api) -> tuple[User, str, str]:
    user = await api.sign_up()
    ws = await api.ok("POST", "/workspaces", {"name": "Uploads"}, token=user.token)
    project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "P"},
                           token=user.token)
    return user, ws["id"], project["id"]


async def _upload(api: Api, user: User, pid: str, path: str, data: bytes) -> tuple[int, dict]:
    reply = await api.call("POST", f"/projects/{pid}/uploads", token=user.token, data=data,
                           headers=OCTETS, params={"path": path})
    return reply.status, reply.body


async def _download(
    server: LiveServer, user: User, file_id: str
) -> tuple[int, bytes, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as session, session.get(
        f"{server.url}/api/v1/files/{file_id}/download",
        headers={"Authorization": f"Bearer {user.token}"},
    ) as resp:
        return resp.status, await resp.read(), CIMultiDict(resp.headers)


async def test_binary_upload_is_a_stored_object_shown_in_the_tree(
    api: Api, server: LiveServer, db: Database, settings: Settings
) -> None:
    user, _, pid = await _project(api)
    status, row = await _upload(api, user, pid, "assets/img/logo.png", PNG)
    assert status == 201, row
    digest = hashlib.sha256(PNG).hexdigest()
    assert row["storage_path"] == key_of(digest)
    assert (row["size_bytes"], row["mime_type"], row["language"]) == (len(PNG), "image/png", None)
    # The parent folders were created; the tree lists the file with its storage path.
    tree = await api.ok("GET", f"/projects/{pid}/files", token=user.token)
    by_path = {f["path"]: f for f in tree["items"]}
    assert by_path["assets"]["type"] == by_path["assets/img"]["type"] == "folder"
    assert by_path["assets/img/logo.png"]["storage_path"] == key_of(digest)
    async with db.acquire() as conn:
        content = await conn.fetchval("select content from public.files where id = $1",
                                      uuid.UUID(row["id"]))
    assert content is None
    stored = settings.storage.directory / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == PNG
    # Downloads stream the same bytes, as a sandboxed, nosniff attachment.
    status, body, headers = await _download(server, user, row["id"])
    assert status == 200 and body == PNG
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith('attachment; filename="logo.png"')
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert headers["ETag"] == f'"{digest}"'
    # GET /files/{id} has no text for it.
    meta = await api.ok("GET", f"/files/{row['id']}", token=user.token)
    assert meta["content"] is None and meta["storage_path"] == key_of(digest)


async def test_small_text_becomes_a_document_and_updates_as_a_diff(
    api: Api, server: LiveServer
) -> None:
    user, _, pid = await _project(api)
    status, row = await _upload(api, user, pid, "notes.md", "# Notes\nπ\n".encode())
    assert status == 201 and row["storage_path"] is None and row["language"] == "markdown"
    agent = await NodeAgent.start(server.ws_url, row["id"], user.token)
    try:
        await agent.wait_synced()
        assert await agent.text() == "# Notes\nπ\n"
        status, again = await _upload(api, user, pid, "notes.md", b"# Notes\nmore\n")
        assert (status, again["id"]) == (200, row["id"])
        # The open editor receives the change live.
        await wait_for_text(agent, "# Notes\nmore\n")
    finally:
        await agent.stop()
    status, body, _ = await _download(server, user, row["id"])
    assert (status, body) == (200, b"# Notes\nmore\n")


async def wait_for_text(agent: NodeAgent, expected: str, timeout: float = 10) -> None:
    async def check() -> bool:
        return bool(await agent.text() == expected)

    await wait_until(check, timeout)


async def test_a_document_replaced_by_binary_closes_its_editors_and_never_loads(
    api: Api, server: LiveServer
) -> None:
    user, _, pid = await _project(api)
    _, row = await _upload(api, user, pid, "data.bin", b"plain text at first\n")
    assert row["storage_path"] is None
    agent = await NodeAgent.start(server.ws_url, row["id"], user.token)
    try:
        await agent.wait_synced()
        status, replaced = await _upload(api, user, pid, "data.bin", PNG)
        assert status == 200 and replaced["storage_path"] == key_of(hashlib.sha256(PNG).hexdigest())
        await wait_for(lambda: 4415 in agent.close_codes(), 10)
    finally:
        await agent.stop()
    # A new editor is refused at once: a stored object is never a CRDT document.
    late = await NodeAgent.start(server.ws_url, row["id"], user.token)
    try:
        await wait_for(lambda: 4415 in late.close_codes(), 10)
    finally:
        await late.stop()
    status, body, _ = await _download(server, user, row["id"])
    assert (status, body) == (200, PNG)
    # Text written over it makes it a document again.
    await api.ok("PUT", f"/files/{row['id']}/content", {"content": "text again\n"},
                 token=user.token)
    meta = await api.ok("GET", f"/files/{row['id']}", token=user.token)
    assert meta["storage_path"] is None and meta["content"] == "text again\n"


async def test_uploads_over_the_limit_leave_nothing(
    api: Api, settings: Settings, live_server: Callable[..., Awaitable[LiveServer]],
    tmp_path: Path,
) -> None:
    storage = dataclasses.replace(settings.storage, directory=tmp_path / "small",
                                  max_upload_bytes=100_000, max_text_bytes=1000)
    server = await live_server(dataclasses.replace(settings, storage=storage))
    async with aiohttp.ClientSession() as session:
        small_api = Api(session, server.url)
        user, _, pid = await _project(small_api)
        # Declared too large: refused before reading.
        status, body = await _upload(small_api, user, pid, "big.bin", os.urandom(100_001))
        assert status == 413 and body["error"]["code"] == "payload_too_large"

        # Streamed without a length: refused once past the limit.
        async def stream() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield os.urandom(10_000)

        async with session.post(
            f"{server.url}/api/v1/projects/{pid}/uploads", params={"path": "big.bin"},
            data=stream(), headers={"Authorization": f"Bearer {user.token}", **OCTETS},
        ) as resp:
            assert resp.status == 413, await resp.text()
        # Exactly at the limit is fine; text over max_text_bytes is an object.
        status, row = await _upload(small_api, user, pid, "ok.txt", b"a" * 100_000)
        assert status == 201 and row["storage_path"] is not None
        tree = await small_api.ok("GET", f"/projects/{pid}/files", token=user.token)
        assert [f["path"] for f in tree["items"]] == ["ok.txt"]
    objects = sorted(p.relative_to(storage.directory).parts[0]
                     for p in storage.directory.rglob("*") if p.is_file())
    assert objects == ["sha256"]


async def test_roles_and_paths(api: Api, server: LiveServer, db: Database) -> None:
    owner, ws_id, pid = await _project(api)
    viewer = await api.sign_up()
    outsider = await api.sign_up()
    async with db.service() as conn:
        await conn.execute(
            "insert into public.workspace_members (workspace_id, user_id, role)"
            " values ($1, $2, 'viewer')", uuid.UUID(ws_id), uuid.UUID(viewer.id))
    _, row = await _upload(api, owner, pid, "a.png", PNG)
    status, body = await _upload(api, viewer, pid, "b.png", PNG)
    assert status == 403, body
    status, body = await _upload(api, outsider, pid, "b.png", PNG)
    assert status == 404, body
    assert (await _download(server, viewer, row["id"]))[:2] == (200, PNG)
    assert (await _download(server, outsider, row["id"]))[0] == 404
    for bad in ("../x.png", "a/../../x.png", "a//b.png"):
        status, body = await _upload(api, owner, pid, bad, PNG)
        assert status == 422, (bad, body)
    status, body = await _upload(api, owner, pid, "a.png/inner.png", PNG)
    assert status == 422 and body["error"]["code"] == "parent_not_folder"
    await api.ok("POST", f"/projects/{pid}/files", {"path": "dir", "type": "folder"},
                 token=owner.token)
    status, body = await _upload(api, owner, pid, "dir", PNG)
    assert status == 409 and body["error"]["code"] == "path_taken"
