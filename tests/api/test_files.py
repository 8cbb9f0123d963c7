"""The file tree: path rules, rename/move with descendants, soft delete/restore, versions."""

from __future__ import annotations

import uuid
from typing import Any

from persistence.db import Database
from tests.api.client import Api, User


async def _project(api: Api) -> tuple[User, str]:
    user = await api.sign_up()
    ws = await api.ok("POST", "/workspaces", {"name": "Files"}, token=user.token)
    project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "P"},
                           token=user.token)
    return user, project["id"]


async def _create(api: Api, user: User, pid: str, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok("POST", f"/projects/{pid}/files", body, token=user.token)
    return created


async def _tree(api: Api, user: User, pid: str, deleted: bool = False) -> dict[str, str]:
    reply = await api.call(
        "GET", f"/projects/{pid}/files", token=user.token,
        params={"limit": "200", "include_deleted": "true" if deleted else "false"},
    )
    assert reply.status == 200
    return {f["path"]: f["id"] for f in reply.body["items"]}


async def test_create_with_path_rules_types_and_sizes(api: Api) -> None:
    user, pid = await _project(api)
    src = await _create(api, user, pid, path="/src", type="folder")
    assert (src["path"], src["parent_id"], src["size_bytes"]) == ("src", None, None)
    main = await _create(api, user, pid, path="src\\main.ts", content="const π = 3;\n")
    assert main["path"] == "src/main.ts" and main["parent_id"] == src["id"]
    assert main["language"] == "typescript" and main["mime_type"] == "text/x-typescript"
    assert main["size_bytes"] == len("const π = 3;\n".encode())
    readme = await _create(api, user, pid, name="README.md", parent_id=src["id"])
    assert readme["path"] == "src/README.md" and readme["mime_type"] == "text/markdown"
    docker = await _create(api, user, pid, path="Dockerfile")
    assert docker["language"] == "dockerfile"

    for bad in ("src/../etc/passwd", "src//x.py", "./x.py", "src/ ", "", "/"):
        reply = await api.call("POST", f"/projects/{pid}/files", {"path": bad}, token=user.token)
        assert reply.status == 422, (bad, reply.body)
    dup = await api.call("POST", f"/projects/{pid}/files", {"path": "src/main.ts"},
                         token=user.token)
    assert dup.status == 409 and dup.error_code == "path_taken"
    orphan = await api.call("POST", f"/projects/{pid}/files", {"path": "nope/x.py"},
                            token=user.token)
    assert orphan.status == 404 and orphan.error_code == "parent_not_found"
    under_file = await api.call("POST", f"/projects/{pid}/files", {"path": "Dockerfile/x"},
                                token=user.token)
    assert under_file.status == 422
    folder_content = await api.call(
        "POST", f"/projects/{pid}/files", {"path": "f", "type": "folder", "content": "x"},
        token=user.token,
    )
    assert folder_content.status == 422


async def test_rename_and_move_a_folder_with_nested_files(api: Api) -> None:
    user, pid = await _project(api)
    for path in ("app", "app/core", "app/core/deep", "lib"):
        await _create(api, user, pid, path=path, type="folder")
    for path in ("app/a.py", "app/core/b.py", "app/core/deep/c.js", "apple.txt"):
        await _create(api, user, pid, path=path, content=path)
    tree = await _tree(api, user, pid)

    renamed = await api.ok("PATCH", f"/files/{tree['app']}", {"name": "pkg"}, token=user.token)
    assert renamed["path"] == "pkg"
    after = await _tree(api, user, pid)
    assert set(after) == {
        "pkg", "pkg/core", "pkg/core/deep", "lib", "pkg/a.py", "pkg/core/b.py",
        "pkg/core/deep/c.js", "apple.txt",
    }
    assert after["pkg/core/deep/c.js"] == tree["app/core/deep/c.js"]  # same rows, new paths

    moved = await api.ok("PATCH", f"/files/{tree['app/core']}", {"parent_id": tree["lib"]},
                         token=user.token)
    assert moved["path"] == "lib/core" and moved["parent_id"] == tree["lib"]
    after = await _tree(api, user, pid)
    assert "lib/core/deep/c.js" in after and "pkg/core/b.py" not in after
    deep = await api.ok("GET", f"/files/{tree['app/core/deep/c.js']}", token=user.token)
    assert deep["path"] == "lib/core/deep/c.js" and deep["content"] == "app/core/deep/c.js"

    # Move to the root, rename a file (language follows), and the refusals.
    root = await api.ok("PATCH", f"/files/{tree['app/core']}", {"parent_id": None},
                        token=user.token)
    assert root["path"] == "core" and root["parent_id"] is None
    js = await api.ok("PATCH", f"/files/{tree['app/core/deep/c.js']}", {"name": "c.rs"},
                      token=user.token)
    assert js["path"] == "core/deep/c.rs" and js["language"] == "rust"
    into_self = await api.call(
        "PATCH", f"/files/{tree['app/core']}", {"parent_id": tree["app/core/deep"]},
        token=user.token,
    )
    assert into_self.status == 422
    clash = await api.call("PATCH", f"/files/{tree['lib']}", {"name": "apple.txt"},
                           token=user.token)
    assert clash.status == 409
    bad_name = await api.call("PATCH", f"/files/{tree['lib']}", {"name": "a/b"},
                              token=user.token)
    assert bad_name.status == 422


async def test_soft_delete_and_restore_follow_descendants(api: Api) -> None:
    user, pid = await _project(api)
    await _create(api, user, pid, path="docs", type="folder")
    await _create(api, user, pid, path="docs/guide", type="folder")
    await _create(api, user, pid, path="docs/guide/intro.md", content="# Intro")
    tree = await _tree(api, user, pid)

    assert (await api.call("DELETE", f"/files/{tree['docs']}", token=user.token)).status == 204
    assert set(await _tree(api, user, pid)) == set()
    trash = await _tree(api, user, pid, deleted=True)
    assert set(trash) == {"docs", "docs/guide", "docs/guide/intro.md"}
    child_first = await api.call("POST", f"/files/{tree['docs/guide']}/restore",
                                 token=user.token)
    assert child_first.status == 409 and child_first.error_code == "parent_deleted"
    write = await api.call("PUT", f"/files/{tree['docs/guide/intro.md']}/content",
                           {"content": "x"}, token=user.token)
    assert write.status == 409

    restored = await api.ok("POST", f"/files/{tree['docs']}/restore", token=user.token)
    assert restored["is_deleted"] is False
    assert set(await _tree(api, user, pid)) == set(trash)

    # A new entry on a deleted entry's path replaces it for good.
    await api.ok("DELETE", f"/files/{tree['docs/guide/intro.md']}", token=user.token)
    again = await _create(api, user, pid, path="docs/guide/intro.md", content="new")
    assert again["id"] != tree["docs/guide/intro.md"]
    gone = await api.call("GET", f"/files/{tree['docs/guide/intro.md']}", token=user.token)
    assert gone.status == 404


async def test_upload_versions_and_restore(api: Api, db: Database) -> None:
    user, pid = await _project(api)
    f = await _create(api, user, pid, path="main.py", content="v0")
    fid = f["id"]
    uploaded = await api.ok("PUT", f"/files/{fid}/content", {"content": "v1 ✓"},
                            token=user.token)
    assert uploaded["size_bytes"] == len("v1 ✓".encode())
    assert (await api.ok("GET", f"/files/{fid}", token=user.token))["content"] == "v1 ✓"
    assert (await api.ok("GET", f"/files/{fid}/versions", token=user.token))["items"] == []
    missing = await api.call("POST", f"/files/{fid}/versions/1/restore", token=user.token)
    assert missing.status == 404

    # Checkpoints come from the documents hub (save_version); here one is written directly.
    async with db.service() as conn:
        await conn.execute(
            "insert into public.file_versions (file_id, version_number, content, size_bytes,"
            " change_message) values ($1, 1, 'v1 ✓', 5, 'checkpoint')",
            uuid.UUID(fid),
        )
    await api.ok("PUT", f"/files/{fid}/content", {"content": "v2"}, token=user.token)
    restored = await api.ok("POST", f"/files/{fid}/versions/1/restore", token=user.token)
    assert restored["version_number"] == 2
    assert restored["change_message"] == "Restored version 1"
    assert restored["changed_by"] == user.id
    assert (await api.ok("GET", f"/files/{fid}", token=user.token))["content"] == "v1 ✓"
    versions = await api.all_pages(f"/files/{fid}/versions", token=user.token, limit=1)
    assert [v["version_number"] for v in versions] == [2, 1]
    assert (await api.ok("GET", f"/files/{fid}/versions/2", token=user.token))["content"] == (
        "v1 ✓"
    )
    for bad in ("0", "abc", "99999999999"):
        reply = await api.call("GET", f"/files/{fid}/versions/{bad}", token=user.token)
        assert reply.status == 404
    folder = await _create(api, user, pid, path="d", type="folder")
    no_content = await api.call("PUT", f"/files/{folder['id']}/content", {"content": "x"},
                                token=user.token)
    assert no_content.status == 422


async def test_read_serves_files_content_or_the_unmerged_log(api: Api, db: Database) -> None:
    """files.content is served as is when no log rows wait for a compaction; log rows
    appended by another process (no room loaded here) are merged into what GET returns."""
    from collab.merge import build_from_text, new_doc

    user, pid = await _project(api)
    fid = (await _create(api, user, pid, path="read.py", content="stored text"))["id"]
    assert (await api.ok("GET", f"/files/{fid}", token=user.token))["content"] == "stored text"

    state, _ = build_from_text("stored text")
    doc, text = new_doc()
    doc.apply_update(state)
    before = doc.get_state()
    text.insert(0, "edited elsewhere: ")
    update = doc.get_update(before)
    async with db.service() as conn:
        await conn.execute(
            "insert into public.document_states (file_id, state, state_vector)"
            " values ($1, $2, $3)", uuid.UUID(fid), state, before,
        )
        await conn.execute(
            "insert into public.document_updates (file_id, update) values ($1, $2)",
            uuid.UUID(fid), update,
        )
    read = await api.ok("GET", f"/files/{fid}", token=user.token)
    assert read["content"] == "edited elsewhere: stored text"
    assert read["size_bytes"] == len(read["content"].encode())
