"""A git host (bare repositories over smart HTTP with token auth), an app allowed to reach
it, and a project with its owner and a second member."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from gitsync.config import GitConfig
from server.settings import Settings
from tests.api.client import Api
from tests.fakes.git_http import GitHost
from tests.gitsync.helpers import Stage, make_stage
from tests.support.servers import LiveServer

TEST_KEY = "test-k1:" + "A" * 43  # 32 bytes of zeros... in base64url, a test key only


@pytest.fixture
async def git_host(tmp_path: Path) -> AsyncIterator[GitHost]:
    host = GitHost(tmp_path / "host")
    await host.start()
    yield host
    await host.stop()


@pytest.fixture
def git_settings(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings,
        encryption_keys=(TEST_KEY,),
        git=GitConfig(cache_dir=tmp_path / "git-cache", allowed_hosts=("127.0.0.1",),
                      allow_http=True, command_timeout_s=120),
    )


@pytest.fixture
async def git_server(
    live_server: Callable[..., Awaitable[LiveServer]], git_settings: Settings
) -> LiveServer:
    return await live_server(git_settings)


@pytest.fixture
async def stage(git_server: LiveServer) -> AsyncIterator[Stage]:
    async with aiohttp.ClientSession() as session:
        yield await make_stage(Api(session, git_server.url), git_server)
