"""Real git against a local smart-HTTP host: connect and import, push, pull, conflicts,
force-pushed remotes, new branches."""

from __future__ import annotations

import hashlib
import uuid

from persistence.db import Database
from storage.objects import key_of
from tests.fakes.git_http import GitHost
from tests.gitsync.helpers import Stage

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
FILES: dict[str, bytes | str] = {
    "README.md": "# Demo\n\nA project.\n",
    "src/app.py": "def main():\n    print('hello')\n\n\nif __name__ == '__main__':\n    main()\n",
    "src/util/strings.py": "def shout(s):\n    return s.upper()\n",
    "assets/logo.png": PNG,
    "run.sh": "#!/bin/sh\necho run\n",
}


async def test_connect_imports_text_as_documents_and_binary_as_objects(
    stage: Stage, git_host: GitHost, db: Database
) -> None:
    git_host.create("acme/demo", FILES, token="s3cret-token")
    connected = await stage.connect(git_host.url("acme/demo"), token="s3cret-token")
    repo = connected["repository"]
    assert repo["provider"] == "github" and repo["repo_full_name"] == "acme/demo"
    assert repo["default_branch"] == "main" and repo["auth_source"] == "token"
    assert "s3cret" not in str(connected)
    assert connected["webhook"]["url"].endswith(f"/api/v1/git/webhooks/{repo['id']}")
    job = await stage.job(connected["job_id"])
    assert job["status"] == "completed", job
    assert job["output"]["created"] == len(FILES)
    tree = await stage.tree()
    assert {p for p, f in tree.items() if f["type"] == "file"} == set(FILES)
    assert {p for p, f in tree.items() if f["type"] == "folder"} == {"src", "src/util", "assets"}
    assert tree["src/util/strings.py"]["parent_id"] == tree["src/util"]["id"]
    assert await stage.text(tree["src/app.py"]["id"]) == FILES["src/app.py"]
    assert tree["src/app.py"]["language"] == "python"
    logo = tree["assets/logo.png"]
    assert logo["storage_path"] == key_of(hashlib.sha256(PNG).hexdigest())
    state = await stage.repository()
    assert state["sync_status"] == "idle" and state["last_sync_at"] is not None
    assert state["base_commit"] == git_host.head("acme/demo")
    # The token is stored encrypted, bound to the row.
    async with db.acquire() as conn:
        stored = await conn.fetchval(
            "select credentials_encrypted from public.git_repositories where id = $1",
            uuid.UUID(repo["id"]))
    assert stored.startswith("v1:test-k1:") and "s3cret" not in stored
    # Only authenticated requests reached the host's repository, never with the token in
    # a URL (the askpass helper answered the Basic challenge).
    assert all(seen.user in (None, "x-access-token") for seen in git_host.requests)
    assert all("s3cret" not in seen.path for seen in git_host.requests)


async def test_push_commits_live_text_as_the_user(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/demo", FILES, token="tok")
    connected = await stage.connect(git_host.url("acme/demo"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    tree = await stage.tree()
    app = tree["src/app.py"]["id"]
    await stage.api.ok("PUT", f"/files/{app}/content",
                       {"content": FILES["src/app.py"].replace("hello", "bonjour")},  # type: ignore[union-attr]
                       token=stage.member.token)
    await stage.api.ok("POST", f"/projects/{stage.project_id}/files",
                       {"path": "docs", "type": "folder"}, token=stage.member.token)
    await stage.api.ok("POST", f"/projects/{stage.project_id}/files",
                       {"path": "docs/new.md", "content": "new\n"}, token=stage.member.token)
    await stage.api.ok("DELETE", f"/files/{tree['run.sh']['id']}", token=stage.member.token)
    job = await stage.push("Say bonjour", user=stage.member)
    assert job["status"] == "completed", job
    assert job["output"]["pushed"] is True
    head = git_host.head("acme/demo")
    assert job["output"]["commit"] == head
    log = git_host.log("acme/demo")
    assert log[0]["subject"] == "Say bonjour"
    assert log[0]["author_email"] == stage.member.email
    assert log[0]["parents"] == log[1]["sha"]
    assert git_host.show("acme/demo", "main", "src/app.py").decode().count("bonjour") == 1
    assert git_host.show("acme/demo", "main", "docs/new.md") == b"new\n"
    assert git_host.show("acme/demo", "main", "assets/logo.png") == PNG
    assert "run.sh" not in git_host.files("acme/demo")
    state = await stage.repository()
    assert state["base_commit"] == head and state["sync_status"] == "idle"
    # Nothing changed since: the next push has nothing to do.
    again = await stage.push("Nothing")
    assert again["output"]["up_to_date"] is True
    assert git_host.head("acme/demo") == head


async def test_pull_takes_remote_changes_and_keeps_ours(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/demo", FILES, token="tok")
    connected = await stage.connect(git_host.url("acme/demo"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    tree = await stage.tree()
    # Ours: a change at the end of app.py; theirs: a change at its top, a new file, a
    # deleted file and a new binary.
    ours = str(FILES["src/app.py"]) + "# ours\n"
    await stage.api.ok("PUT", f"/files/{tree['src/app.py']['id']}/content", {"content": ours},
                       token=stage.owner.token)
    git_host.commit("acme/demo", {
        "src/app.py": "# theirs\n" + str(FILES["src/app.py"]),
        "NEW.txt": "from the remote\n", "run.sh": None, "assets/icon.png": PNG + b"x",
    })
    job = await stage.pull()
    assert job["status"] == "completed", job
    assert (job["output"]["created"], job["output"]["updated"], job["output"]["deleted"]) == \
        (2, 1, 1)
    tree = await stage.tree()
    assert await stage.text(tree["src/app.py"]["id"]) == \
        "# theirs\n" + str(FILES["src/app.py"]) + "# ours\n"
    assert await stage.text(tree["NEW.txt"]["id"]) == "from the remote\n"
    assert "run.sh" not in tree
    assert tree["assets/icon.png"]["storage_path"] is not None
    assert (await stage.repository())["base_commit"] == git_host.head("acme/demo")
    # Ours goes out with the next push, on top of theirs.
    job = await stage.push("Ours too")
    assert job["status"] == "completed", job
    assert git_host.show("acme/demo", "main", "src/app.py").decode().endswith("# ours\n")


async def test_a_real_conflict_stops_and_loses_nothing(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/demo", FILES, token="tok")
    connected = await stage.connect(git_host.url("acme/demo"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    tree = await stage.tree()
    readme = tree["README.md"]["id"]
    await stage.api.ok("PUT", f"/files/{readme}/content", {"content": "# Ours\n"},
                       token=stage.owner.token)
    await stage.api.ok("DELETE", f"/files/{tree['run.sh']['id']}", token=stage.owner.token)
    remote_head = git_host.commit("acme/demo", {
        "README.md": "# Theirs\n", "run.sh": "#!/bin/sh\necho changed\n",
        "src/util/strings.py": "def shout(s):\n    return s.upper() + '!'\n",
    })
    base = (await stage.repository())["base_commit"]
    job = await stage.pull()
    assert job["status"] == "failed"
    state = await stage.repository()
    assert state["sync_status"] == "error"
    assert state["last_error"]["code"] == "conflict"
    assert {f["path"] for f in state["last_error"]["files"]} == {"README.md", "run.sh"}
    # Nothing changed on either side: not even the file only the remote changed.
    assert state["base_commit"] == base
    assert await stage.text(readme) == "# Ours\n"
    strings = (await stage.tree())["src/util/strings.py"]["id"]
    assert await stage.text(strings) == FILES["src/util/strings.py"]
    assert git_host.head("acme/demo") == remote_head
    # A push is refused the same way (it would have to pull first).
    job = await stage.push("Mine")
    assert job["status"] == "failed"
    assert git_host.head("acme/demo") == remote_head
    # Resolving: take their README, keep our deletion by restoring... we accept theirs.
    await stage.api.ok("PUT", f"/files/{readme}/content", {"content": "# Theirs\n"},
                       token=stage.owner.token)
    deleted = await stage.api.call("GET", f"/projects/{stage.project_id}/files",
                                   token=stage.owner.token,
                                   params={"include_deleted": "true", "limit": "200"})
    run_id = next(f["id"] for f in deleted.body["items"] if f["path"] == "run.sh")
    await stage.api.ok("POST", f"/files/{run_id}/restore", token=stage.owner.token)
    job = await stage.pull()
    assert job["status"] == "completed", job
    assert (await stage.repository())["sync_status"] == "idle"
    assert await stage.text(run_id) == "#!/bin/sh\necho changed\n"


async def test_force_pushed_remote(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/demo", FILES, token="tok")
    connected = await stage.connect(git_host.url("acme/demo"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    first = git_host.head("acme/demo")
    assert first is not None
    second = git_host.commit("acme/demo", {"README.md": "# Second\n"})
    assert (await stage.pull())["status"] == "completed"
    # History rewritten: main goes back to the first commit plus another change.
    rewritten = git_host.commit("acme/demo", {"NOTES.md": "rewritten\n"}, force_base=first)
    assert git_host.head("acme/demo") == rewritten != second
    job = await stage.pull()
    assert job["status"] == "completed", job
    tree = await stage.tree()
    assert await stage.text(tree["README.md"]["id"]) == FILES["README.md"]
    assert await stage.text(tree["NOTES.md"]["id"]) == "rewritten\n"
    # Pushing builds on the rewritten head, never on the lost commit.
    await stage.api.ok("PUT", f"/files/{tree['NOTES.md']['id']}/content",
                       {"content": "rewritten and edited\n"}, token=stage.owner.token)
    job = await stage.push("After the rewrite")
    assert job["status"] == "completed", job
    log = git_host.log("acme/demo")
    assert log[0]["parents"] == rewritten
    assert second not in {c["sha"] for c in log}


async def test_push_to_a_new_branch(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/demo", FILES, token="tok")
    connected = await stage.connect(git_host.url("acme/demo"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    main_head = git_host.head("acme/demo")
    tree = await stage.tree()
    await stage.api.ok("PUT", f"/files/{tree['README.md']['id']}/content",
                       {"content": "# Feature\n"}, token=stage.owner.token)
    job = await stage.push("A feature", branch="feature/readme")
    assert job["status"] == "completed", job
    assert git_host.head("acme/demo") == main_head
    assert git_host.show("acme/demo", "feature/readme", "README.md") == b"# Feature\n"
    assert git_host.log("acme/demo", "feature/readme")[0]["parents"] == main_head
    # The branch exists now: pushing to it as a new branch again is refused.
    job = await stage.push("Again", branch="feature/readme")
    assert job["status"] == "failed"
    assert (await stage.repository())["last_error"]["code"] == "branch_exists"
    # Invalid names never reach git.
    job = await stage.push("Bad", branch="-o;rm")
    assert job["status"] == "failed"
    assert (await stage.repository())["last_error"]["code"] == "invalid_branch"
