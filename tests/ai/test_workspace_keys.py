"""A workspace's own OpenAI/Anthropic key answers its conversations (usage still metered);
its Firecrawl key attaches a web page to a message, with Firecrawl's failures reported."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from ai.config import AIConfig
from persistence.db import Database
from server.integrations.config import IntegrationsConfig
from server.settings import Settings
from tests.ai.conftest import fake_openai_config
from tests.ai.helpers import Team, connect, token
from tests.fakes import anthropic_server, openai_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.integrations import FakeIntegrations
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support.servers import LiveServer

StartServer = Callable[..., Awaitable[LiveServer]]
OPENAI_KEY = "sk-workspace-openai-1"
ANTHROPIC_KEY = "sk-ant-workspace-1"
FIRECRAWL_KEY = "fc-workspace-key-1"


@pytest.fixture
async def workspace_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=OPENAI_KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def workspace_anthropic() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=ANTHROPIC_KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def firecrawl() -> AsyncIterator[FakeIntegrations]:
    server = FakeIntegrations(valid_keys={FIRECRAWL_KEY})
    await server.start()
    yield server
    await server.stop()


def integrations(openai: FakeOpenAI, anthropic: FakeAnthropic,
                 firecrawl: FakeIntegrations) -> IntegrationsConfig:
    return IntegrationsConfig(openai_url=openai.url, anthropic_url=anthropic.url,
                              firecrawl_url=firecrawl.url)


async def set_key(server: LiveServer, team: Team, provider: str, key: str,
                  config: dict[str, Any] | None = None) -> None:
    async with aiohttp.ClientSession() as session, session.put(
        f"{server.url}/api/v1/workspaces/{team.workspace}/integrations/{provider}",
        json={"api_key": key, "config": config or {}},
        headers={"Authorization": f"Bearer {token(team.owner)}"},
    ) as resp:
        assert resp.status == 200, await resp.text()


async def test_the_workspace_openai_key_answers_and_usage_is_metered(
    live_server: StartServer, settings: Settings, team: Team, db: Database,
    workspace_openai: FakeOpenAI, workspace_anthropic: FakeAnthropic,
    firecrawl: FakeIntegrations,
) -> None:
    # The server itself has no AI provider: only the workspace's key can answer.
    server = await live_server(dataclasses.replace(
        settings, ai=AIConfig(retry_base_s=0.05),
        integrations=integrations(workspace_openai, workspace_anthropic, firecrawl)))
    await set_key(server, team, "openai", OPENAI_KEY, {"model": "gpt-workspace"})
    workspace_openai.play(Script(chunks=openai_server.stream(["From", " your key"])))
    client = await connect(server.ws_url, team.conversation, team.member)
    try:
        await client.ask("hello")
        done = await client.until_finished()
    finally:
        await client.close()
    assert done["type"] == "done" and done["message"]["content"] == "From your key"
    request = workspace_openai.requests[-1]
    assert request.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.body["model"] == "gpt-workspace"
    async with db.acquire() as conn:
        usage = await conn.fetchrow(
            "select amount, metadata from public.usage_records where user_id = $1 "
            "and resource_type = 'ai_tokens'", team.member)
        used = await conn.fetchval("select last_used_at from public.api_integrations")
    assert usage is not None and int(usage["amount"]) == 18  # the fake's 11 + 7 tokens
    assert usage["metadata"]["provider"] == "openai:workspace"
    assert used is not None
    # Another workspace without a key gets nothing from this one.
    outsider = await connect(server.ws_url, team.other_conversation, team.outsider)
    try:
        await outsider.ask("hello")
        error = await outsider.until("error")
    finally:
        await outsider.close()
    assert error["code"] == "ai_unavailable"


async def test_the_workspace_anthropic_key_answers(
    live_server: StartServer, settings: Settings, team: Team,
    workspace_openai: FakeOpenAI, workspace_anthropic: FakeAnthropic,
    firecrawl: FakeIntegrations,
) -> None:
    server = await live_server(dataclasses.replace(
        settings, ai=AIConfig(retry_base_s=0.05),
        integrations=integrations(workspace_openai, workspace_anthropic, firecrawl)))
    await set_key(server, team, "anthropic", ANTHROPIC_KEY)
    workspace_anthropic.play(Script(chunks=anthropic_server.stream(["Claude", " here"])))
    client = await connect(server.ws_url, team.conversation, team.member)
    try:
        await client.ask("hello")
        done = await client.until_finished()
    finally:
        await client.close()
    assert done["message"]["content"] == "Claude here"
    assert workspace_anthropic.requests[-1].headers["x-api-key"] == ANTHROPIC_KEY


async def test_a_web_page_through_firecrawl_and_its_failures(
    live_server: StartServer, settings: Settings, team: Team, db: Database,
    fake_openai: FakeOpenAI, workspace_openai: FakeOpenAI,
    workspace_anthropic: FakeAnthropic, firecrawl: FakeIntegrations,
) -> None:
    server = await live_server(dataclasses.replace(
        settings, ai=fake_openai_config(fake_openai),
        integrations=integrations(workspace_openai, workspace_anthropic, firecrawl)))
    page = "https://docs.example.test/install"
    firecrawl.pages[page] = ("Install guide", "# Install\n\nRun `pip install thing`.")
    client = await connect(server.ws_url, team.conversation, team.member)
    try:
        # No key yet: said plainly, nothing stored.
        await client.ask("summarise", {"url": page})
        missing = await client.until("error")
        assert missing["code"] == "firecrawl_not_configured"
        await set_key(server, team, "firecrawl", FIRECRAWL_KEY)

        fake_openai.play(Script(chunks=openai_server.stream(["Use pip."])))
        await client.ask("how do I install it?", {"url": page})
        done = await client.until_finished()
        assert done["type"] == "done"
        scraped = firecrawl.scraped[-1]
        assert scraped["url"] == page and scraped["formats"] == ["markdown"]
        prompt = fake_openai.requests[-1].body["messages"][-1]["content"]
        assert "Install guide (https://docs.example.test/install)" in prompt
        assert "Run `pip install thing`." in prompt and prompt.endswith("how do I install it?")

        for mode, code in [("credits", "firecrawl_out_of_credits"),
                           ("rate_limited", "firecrawl_rate_limited"),
                           ("timeout", "web_page_timeout"), ("error", "firecrawl_error")]:
            firecrawl.scrape_mode = mode
            await client.ask("again", {"url": page})
            error = await client.until("error")
            assert error["code"] == code, (mode, error)
        await client.ask("bad", {"url": "file:///etc/passwd"})
        assert (await client.until("error"))["code"] == "bad_request"
    finally:
        await client.close()
    async with db.acquire() as conn:
        # Only the successful question produced a reply; refused ones stored nothing.
        count = await conn.fetchval(
            "select count(*) from public.messages where conversation_id = $1", team.conversation)
        assert count == 2
        assert await conn.fetchval("select last_used_at from public.api_integrations "
                                   "where provider = 'firecrawl'") is not None
    assert isinstance(uuid.UUID(done["message"]["id"]), uuid.UUID)
