"""Fake provider servers for the AI tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ai.config import AIConfig
from persistence.db import Database
from server.settings import Settings
from tests.ai.helpers import Team, make_team
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.support.servers import LiveServer


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


def fake_openai_config(fake: FakeOpenAI) -> AIConfig:
    return AIConfig(base_url=fake.url, api_key="sk-fake", model="gpt-fake-1", retry_base_s=0.05)


@pytest.fixture
async def chat_server(
    fake_openai: FakeOpenAI,
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
) -> LiveServer:
    """The app with the AI provider pointed at the fake OpenAI server."""
    return await live_server(dataclasses.replace(settings, ai=fake_openai_config(fake_openai)))


@pytest.fixture
async def team(db: Database) -> Team:
    return await make_team(db)
