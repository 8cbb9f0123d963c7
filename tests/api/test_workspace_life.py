"""The whole life of a workspace with three people in different roles."""

from __future__ import annotations

from persistence.db import Database
from tests.api.client import Api


async def test_workspace_life_with_three_users(api: Api, db: Database) -> None:
    alice = await api.sign_up("alice@example.test")  # owner
    bob = await api.sign_up("bob@example.test")  # admin, later owner
    carol = await api.sign_up("carol@example.test")  # viewer, later member

    ws = await api.ok("POST", "/workspaces", {"name": "Acme Tools"}, token=alice.token)
    wid = ws["id"]
    assert ws["slug"] == "acme-tools" and ws["owner_id"] == alice.id
    # Same name again: a new slug is generated; an explicit taken slug is a conflict.
    second = await api.ok("POST", "/workspaces", {"name": "Acme Tools"}, token=alice.token)
    assert second["slug"].startswith("acme-tools-") and second["slug"] != ws["slug"]
    taken = await api.call(
        "POST", "/workspaces", {"name": "X", "slug": "acme-tools"}, token=bob.token
    )
    assert taken.status == 409 and taken.error_code == "slug_taken"

    # Invitations: by email, with a role; unknown emails and duplicates are refused.
    added = await api.ok(
        "POST", f"/workspaces/{wid}/members", {"email": bob.email, "role": "admin"},
        token=alice.token,
    )
    assert added["role"] == "admin" and added["invited_by"] == alice.id
    await api.ok(
        "POST", f"/workspaces/{wid}/members", {"email": carol.email, "role": "viewer"},
        token=bob.token,
    )
    dup = await api.call(
        "POST", f"/workspaces/{wid}/members", {"email": carol.email}, token=bob.token
    )
    assert dup.status == 409
    nobody = await api.call(
        "POST", f"/workspaces/{wid}/members", {"email": "ghost@example.test"}, token=bob.token
    )
    assert nobody.status == 404
    # An admin cannot create owners.
    as_owner = await api.call(
        "PATCH", f"/workspaces/{wid}/members/{carol.id}", {"role": "owner"}, token=bob.token
    )
    assert as_owner.status == 403
    members = await api.all_pages(f"/workspaces/{wid}/members", token=carol.token)
    assert {m["email"]: m["role"] for m in members} == {
        alice.email: "owner", bob.email: "admin", carol.email: "viewer"
    }

    # Everyone sees the workspace in their list, with their own role.
    listed = await api.ok("GET", "/workspaces", token=carol.token)
    assert [(w["id"], w["role"]) for w in listed["items"]] == [(wid, "viewer")]

    # Projects: the viewer reads, cannot create; the admin creates; opening sorts the list.
    denied = await api.call(
        "POST", f"/workspaces/{wid}/projects", {"name": "Nope"}, token=carol.token
    )
    assert denied.status == 403
    api_project = await api.ok(
        "POST", f"/workspaces/{wid}/projects", {"name": "API", "visibility": "team"},
        token=bob.token,
    )
    web_project = await api.ok(
        "POST", f"/workspaces/{wid}/projects", {"name": "Web"}, token=bob.token
    )
    await api.ok("GET", f"/projects/{api_project['id']}", token=carol.token)
    projects = await api.ok("GET", f"/workspaces/{wid}/projects", token=carol.token)
    assert [p["name"] for p in projects["items"]] == ["API", "Web"]
    await api.ok("GET", f"/projects/{web_project['id']}", token=carol.token)
    projects = await api.ok("GET", f"/workspaces/{wid}/projects", token=carol.token)
    assert [p["name"] for p in projects["items"]] == ["Web", "API"]

    # Files: the viewer reads but cannot write.
    pid = api_project["id"]
    await api.ok("POST", f"/projects/{pid}/files", {"path": "src", "type": "folder"},
                 token=bob.token)
    main = await api.ok("POST", f"/projects/{pid}/files",
                        {"path": "src/main.py", "content": "print('hi')\n"}, token=bob.token)
    read = await api.ok("GET", f"/files/{main['id']}", token=carol.token)
    assert read["content"] == "print('hi')\n" and read["language"] == "python"
    write = await api.call("PUT", f"/files/{main['id']}/content", {"content": "x"},
                           token=carol.token)
    assert write.status == 403

    # Promote the viewer; she can now write and start a conversation.
    promoted = await api.ok(
        "PATCH", f"/workspaces/{wid}/members/{carol.id}", {"role": "member"}, token=bob.token
    )
    assert promoted["role"] == "member"
    await api.ok("PUT", f"/files/{main['id']}/content", {"content": "print('bye')\n"},
                 token=carol.token)
    conv = await api.ok("POST", f"/projects/{pid}/conversations", {"title": "Help"},
                        token=carol.token)
    mine = await api.ok("GET", f"/projects/{pid}/conversations", token=carol.token)
    assert [c["id"] for c in mine["items"]] == [conv["id"]]
    theirs = await api.ok("GET", f"/projects/{pid}/conversations", token=alice.token)
    assert theirs["items"] == []
    renamed = await api.ok("PATCH", f"/conversations/{conv['id']}", {"title": "Help me"},
                           token=carol.token)
    assert renamed["title"] == "Help me"
    await api.ok("POST", f"/conversations/{conv['id']}/archive", token=carol.token)
    mine = await api.ok("GET", f"/projects/{pid}/conversations", token=carol.token)
    assert mine["items"] == []

    # Ownership: the last owner can neither leave nor be demoted; after a handover she can.
    last = await api.call("DELETE", f"/workspaces/{wid}/members/{alice.id}", token=alice.token)
    assert last.status == 409 and last.error_code == "last_owner"
    demote = await api.call(
        "PATCH", f"/workspaces/{wid}/members/{alice.id}", {"role": "admin"}, token=alice.token
    )
    assert demote.status == 409
    await api.ok("PATCH", f"/workspaces/{wid}/members/{bob.id}", {"role": "owner"},
                 token=alice.token)
    leave = await api.call("DELETE", f"/workspaces/{wid}/members/{alice.id}", token=alice.token)
    assert leave.status == 204
    gone = await api.call("GET", f"/workspaces/{wid}", token=alice.token)
    assert gone.status == 404

    # A member leaves; the owner updates, deactivates and finally deletes the workspace.
    assert (await api.call(
        "DELETE", f"/workspaces/{wid}/members/{carol.id}", token=carol.token
    )).status == 204
    updated = await api.ok("PATCH", f"/workspaces/{wid}", {"name": "Acme", "slug": "acme"},
                           token=bob.token)
    assert (updated["name"], updated["slug"]) == ("Acme", "acme")
    deactivated = await api.ok("POST", f"/workspaces/{wid}/deactivate", token=bob.token)
    assert deactivated["is_active"] is False
    assert (await api.call("DELETE", f"/workspaces/{wid}", token=bob.token)).status == 204
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.projects where workspace_id = $1",
                                   api_project["workspace_id"]) == 0
    assert (await api.call("GET", f"/workspaces/{wid}", token=bob.token)).status == 404
