"""Workspace API keys: checked with the provider before they are stored, encrypted, never
returned, managed by admins only."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from persistence.db import Database
from server.integrations.config import IntegrationsConfig
from server.settings import Settings
from tests.api.client import Api
from tests.api.test_variables import token
from tests.fakes.integrations import FakeIntegrations
from tests.support import factories
from tests.support.servers import LiveServer

PROVIDERS = ("openai", "anthropic", "firecrawl", "vercel", "github")


@pytest.fixture
async def fake() -> AsyncIterator[FakeIntegrations]:
    server = FakeIntegrations(valid_keys={f"{p}-good-key-123" for p in PROVIDERS})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def server(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings,
    fake: FakeIntegrations,
) -> LiveServer:
    return await live_server(dataclasses.replace(
        settings, integrations=IntegrationsConfig.from_env(fake.env())))


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)


@pytest.fixture
async def people(db: Database) -> dict[str, uuid.UUID]:
    async with db.service() as conn:
        owner, admin, member, outsider = [await factories.create_user(conn) for _ in range(4)]
        ws = await factories.create_workspace(conn, owner)
        await factories.add_member(conn, ws, admin, "admin")
        await factories.add_member(conn, ws, member, "member")
    return {"owner": owner, "admin": admin, "member": member, "outsider": outsider,
            "workspace": ws}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_good_key_is_stored_encrypted_and_never_returned(
    provider: str, api: Api, people: dict[str, uuid.UUID], db: Database,
    fake: FakeIntegrations,
) -> None:
    path = f"/workspaces/{people['workspace']}/integrations/{provider}"
    key = f"{provider}-good-key-123"
    saved = await api.call("PUT", path, {"api_key": key}, token=token(people["admin"]))
    assert saved.status == 200, saved.body
    assert saved.body["provider"] == provider and key not in str(saved.body)
    listed = await api.ok("GET", f"/workspaces/{people['workspace']}/integrations",
                          token=token(people["owner"]))
    assert [i["provider"] for i in listed["items"]] == [provider]
    assert key not in str(listed)
    async with db.acquire() as conn:
        stored = await conn.fetchval("select api_key_encrypted from public.api_integrations")
    assert stored.startswith("v1:") and key not in stored
    # The check was an authenticated call with the key, in the provider's own header.
    _, headers = fake.checked[-1]
    assert key in (headers.get("Authorization", "") + headers.get("x-api-key", ""))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_rejected_key_is_not_stored(
    provider: str, api: Api, people: dict[str, uuid.UUID], db: Database
) -> None:
    path = f"/workspaces/{people['workspace']}/integrations/{provider}"
    reply = await api.call("PUT", path, {"api_key": "wrong-key-0000"},
                           token=token(people["admin"]))
    assert reply.status == 422 and reply.error_code == "invalid_api_key"
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.api_integrations") == 0


async def test_an_unreachable_provider_stores_nothing(
    api: Api, people: dict[str, uuid.UUID], db: Database, fake: FakeIntegrations
) -> None:
    fake.down = True
    reply = await api.call("PUT", f"/workspaces/{people['workspace']}/integrations/openai",
                           {"api_key": "openai-good-key-123"}, token=token(people["admin"]))
    assert reply.status == 502 and reply.error_code == "provider_unavailable"
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.api_integrations") == 0


async def test_admins_manage_members_cannot(
    api: Api, people: dict[str, uuid.UUID], db: Database
) -> None:
    base = f"/workspaces/{people['workspace']}/integrations"
    body = {"api_key": "vercel-good-key-123", "config": {"team_id": "team_abc"}}
    member = await api.call("PUT", f"{base}/vercel", body, token=token(people["member"]))
    assert member.status == 403
    outsider = await api.call("GET", base, token=token(people["outsider"]))
    assert outsider.status == 404
    unknown = await api.call("PUT", f"{base}/slack", body, token=token(people["admin"]))
    assert unknown.status == 404
    first = await api.ok("PUT", f"{base}/vercel", body, token=token(people["admin"]))
    assert first["config"] == {"team_id": "team_abc"}
    # Another admin replaces it: still one row per workspace and provider.
    second = await api.ok("PUT", f"{base}/vercel", {"api_key": "vercel-good-key-123"},
                          token=token(people["owner"]))
    assert second["id"] == first["id"] and second["user_id"] == str(people["owner"])
    async with db.as_user(str(people["member"])) as conn:
        assert await conn.fetchval("select count(*) from public.api_integrations") == 0
    assert (await api.call("DELETE", f"{base}/vercel", token=token(people["member"]))).status \
        == 403
    assert (await api.call("DELETE", f"{base}/vercel", token=token(people["admin"]))).status \
        == 204
    assert (await api.call("DELETE", f"{base}/vercel", token=token(people["admin"]))).status \
        == 404
