"""A repository picked from the user's connected GitHub account: listed with the user's
OAuth token, imported and pushed with it (the token never given to us by hand)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from server.oauth.config import OAuthConfig
from server.settings import Settings
from tests.api.oauth_browser import Browser
from tests.fakes.git_http import GitHost
from tests.fakes.oauth_providers import FakeOAuthProvider, FakeUser
from tests.support.servers import LiveServer


@pytest.fixture
async def github() -> AsyncIterator[FakeOAuthProvider]:
    fake = FakeOAuthProvider("github", user=FakeUser("7007", "octo-git", "Octo Git",
                                                     "octo-git@example.test"))
    await fake.start()
    yield fake
    await fake.stop()


async def test_connect_a_repository_from_the_account(
    live_server: Callable[..., Awaitable[LiveServer]], git_settings: Settings,
    github: FakeOAuthProvider, git_host: GitHost,
) -> None:
    git_host.create("octo-git/app", {"main.py": "print(1)\n"}, token="not-the-oauth-token")
    git_host.token_check = github.token_valid  # the host takes GitHub's OAuth tokens
    github.repositories = [{"full_name": "octo-git/app", "clone_url": git_host.url("octo-git/app"),
                            "default_branch": "main", "private": True}]
    server = await live_server(dataclasses.replace(
        git_settings, oauth=OAuthConfig.from_env(github.env())))
    browser = Browser(server.url)
    try:
        api = browser.api
        user = await browser.sign_in("github")
        # Not connected to GitLab: a clear refusal, not an empty list.
        reply = await api.call("GET", "/git/accounts/gitlab/repositories", token=user.token)
        assert (reply.status, reply.error_code) == (409, "not_connected")
        listed = await api.ok("GET", "/git/accounts/github/repositories", token=user.token)
        assert listed["items"] == github.repositories
        ws = await api.ok("POST", "/workspaces", {"name": "Mine"}, token=user.token)
        project = await api.ok("POST", f"/workspaces/{ws['id']}/projects", {"name": "App"},
                               token=user.token)
        connected = await api.ok("POST", f"/projects/{project['id']}/git", {
            "repo_url": listed["items"][0]["clone_url"], "provider": "github",
            "use_account": True}, token=user.token)
        assert connected["repository"]["auth_source"] == "oauth"
        pid = project["id"]

        async def finished(job_id: str) -> dict[str, object]:
            while True:
                job = await api.ok("GET", f"/projects/{pid}/git/jobs/{job_id}",
                                   token=user.token)
                if job["status"] in ("completed", "failed"):
                    return dict(job)
                await asyncio.sleep(0.1)

        assert (await finished(connected["job_id"]))["status"] == "completed"
        files = await api.ok("GET", f"/projects/{pid}/files", token=user.token)
        main = next(f for f in files["items"] if f["path"] == "main.py")
        await api.ok("PUT", f"/files/{main['id']}/content", {"content": "print(2)\n"},
                     token=user.token)
        pushed = await api.ok("POST", f"/projects/{pid}/git/push", {"message": "Via OAuth"},
                              token=user.token)
        assert (await finished(pushed["job_id"]))["status"] == "completed"
        [commit, _] = git_host.log("octo-git/app")
        assert (commit["author_name"], commit["author_email"]) == ("Octo Git",
                                                                   "octo-git@example.test")
        # git used the OAuth token (GitHub's git user name for it), never a stored one.
        assert {s.user for s in git_host.requests if s.status == 200} == {"x-access-token"}
    finally:
        await browser.close()
