"""The git flow in a real Chromium: sign in with the fake GitHub, import a repository
picked from the account, two people edit, one commits and pushes; the bare repository on
the (local smart-HTTP) host has the commit with the right author."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gitsync.config import GitConfig
from persistence.db import Database
from server.oauth.config import OAuthConfig
from server.settings import Settings
from tests.e2e.harness import PASSWORD, Api, run_browser, start_ide_server
from tests.fakes.git_http import GitHost
from tests.fakes.oauth_providers import FakeOAuthProvider, FakeUser
from tests.support import factories

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def exec_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="icreate-e2e-git-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def test_github_sign_in_import_coedit_commit_and_push(
    settings: Settings, db: Database, exec_root: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    alice_email = f"alice-{tag}@example.com"
    github = FakeOAuthProvider("github", user=FakeUser("9102", f"alice-{tag}", "Alice Octo",
                                                       alice_email))
    host = GitHost(tmp_path / "host")
    await github.start()
    await host.start()
    repo = f"alice-{tag}/site"
    host.create(repo, {"notes.md": "# Notes\n", "index.html": "<h1>Hi</h1>\n"},
                token="only-oauth-tokens-work")
    host.token_check = github.token_valid
    github.repositories = [{"full_name": repo, "clone_url": host.url(repo),
                            "default_branch": "main", "private": True}]
    # Alice's account exists (confirmed email): her GitHub sign-in links to it.
    async with db.service() as conn:
        alice_id = await factories.create_user(conn, alice_email, full_name="Alice Octo")
        workspace = await factories.create_workspace(conn, alice_id, "Alice's")
        project = await factories.create_project(conn, workspace, "site")
    server = await start_ide_server(dataclasses.replace(
        settings, oauth=OAuthConfig.from_env(github.env()),
        git=GitConfig(cache_dir=tmp_path / "git", allowed_hosts=("127.0.0.1",),
                      allow_http=True),
    ), exec_root)
    try:
        async with aiohttp.ClientSession() as http:
            bob = await Api(server.url, http).sign_up(f"bob-{tag}@example.com", "Bob")
        async with db.service() as conn:
            await factories.add_member(conn, workspace, uuid.UUID(bob.id), "member")
        result = await run_browser("gitflow", {
            "url": server.url, "project_id": str(project), "repo": repo,
            "file_name": "notes.md", "message": "Edited together",
            "users": [{"email": alice_email, "name": "Alice Octo", "github": True},
                      {"email": bob.email, "password": PASSWORD, "name": "Bob"}],
        }, timeout_s=200)
    finally:
        await server.stop()
        await host.stop()
        await github.stop()
    assert not result["problems"], result["problems"]
    [commit, initial] = host.log(repo)
    assert result["pushed"] == commit["sha"] and commit["parents"] == initial["sha"]
    assert commit["subject"] == "Edited together"
    assert (commit["author_name"], commit["author_email"]) == ("Alice Octo", alice_email)
    pushed = host.show(repo, "main", "notes.md").decode()
    assert "alice line" in pushed and "bob line" in pushed
    assert host.show(repo, "main", "index.html") == b"<h1>Hi</h1>\n"
