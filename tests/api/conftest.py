"""Fixtures for the REST API tests: the live server and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from tests.api.client import Api
from tests.support.servers import LiveServer


@pytest.fixture
async def server(live_server: Callable[..., Awaitable[LiveServer]]) -> LiveServer:
    return await live_server()


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)
