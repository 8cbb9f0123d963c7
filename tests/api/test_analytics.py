"""POST /api/v1/analytics/events: validated batches, stamped by the server with the token's
user and the project's workspace, size- and rate-limited per user."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from persistence.db import Database
from server.settings import Settings
from tests.api.client import Api, User
from tests.support.servers import LiveServer

EVENTS = "select * from public.analytics_events order by created_at, event_name"


def event(name: str = "file_opened", **extra: Any) -> dict[str, Any]:
    return {"name": name, "category": "editor", "properties": {"extension": "py"}, **extra}


@pytest.fixture
async def limited(
    settings: Settings, live_server: Callable[..., Awaitable[LiveServer]]
) -> AsyncIterator[Api]:
    config = dataclasses.replace(settings.observability, analytics_events_per_minute=10)
    server = await live_server(dataclasses.replace(settings, observability=config))
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)


async def _project(api: Api, user: User) -> dict[str, Any]:
    workspace = await api.ok("POST", "/workspaces", {"name": "Product"}, token=user.token)
    project: dict[str, Any] = await api.ok(
        "POST", f"/workspaces/{workspace['id']}/projects", {"name": "P"}, token=user.token
    )
    return project


async def _events(db: Database) -> list[dict[str, Any]]:
    async with db.acquire() as conn:
        return [dict(r) for r in await conn.fetch(EVENTS)]


async def test_a_batch_is_stored_with_the_servers_user_workspace_and_time(
    api: Api, db: Database
) -> None:
    user = await api.sign_up()
    other = await api.sign_up()
    other_project = await _project(api, other)
    project = await _project(api, user)
    forged = {"user_id": other.id, "workspace_id": other_project["workspace_id"],
              "created_at": "2001-01-01T00:00:00Z"}
    reply = await api.call("POST", "/analytics/events", {
        "session_id": "tab-1", "project_id": project["id"], **forged,
        "events": [
            event(**forged, page_url=f"http://127.0.0.1/?token={user.token}#project=x"),
            {"name": "run_started", "category": "execution", "properties": {"ms": 12.5}},
        ],
    }, token=user.token)
    assert reply.status == 202, reply.body
    assert reply.body == {"accepted": 2}
    stored = await _events(db)
    assert [e["event_name"] for e in stored] == ["file_opened", "run_started"]
    now = datetime.now(UTC)
    for row in stored:
        assert str(row["user_id"]) == user.id
        assert str(row["workspace_id"]) == project["workspace_id"]
        assert row["session_id"] == "tab-1"
        assert now - timedelta(minutes=1) < row["created_at"] <= now
        assert row["properties"]["project_id"] == project["id"]
    assert stored[0]["properties"]["extension"] == "py"
    assert user.token not in stored[0]["page_url"] and "token=REDACTED" in stored[0]["page_url"]


async def test_without_a_project_the_workspace_stays_empty(api: Api, db: Database) -> None:
    user = await api.sign_up()
    reply = await api.call("POST", "/analytics/events", {"events": [event()]}, token=user.token)
    assert reply.status == 202
    [row] = await _events(db)
    assert row["workspace_id"] is None and str(row["user_id"]) == user.id


@pytest.mark.parametrize(
    ("batch", "status"),
    [
        ({"events": []}, 422),
        ({}, 422),
        ({"events": "file_opened"}, 422),
        ({"events": [event(name="Has Spaces")]}, 422),
        ({"events": [event(name="x" * 65)]}, 422),
        ({"events": [{"name": "file_opened", "category": "nonsense"}]}, 422),
        ({"events": [event(properties={"nested": {"a": 1}})]}, 422),
        ({"events": [event(properties={f"k{i}": i for i in range(33)})]}, 422),
        ({"events": [event(properties={"long": "x" * 513})]}, 422),
        ({"events": [event()] * 51}, 422),
        ({"events": [event(page_url="x" * 3000)]}, 422),
    ],
)
async def test_bad_batches_are_refused(api: Api, db: Database, batch: Any, status: int) -> None:
    user = await api.sign_up()
    reply = await api.call("POST", "/analytics/events", batch, token=user.token)
    assert reply.status == status, reply.body
    assert reply.error_code == "validation_error"
    assert await _events(db) == []


async def test_bodies_over_the_limit_and_non_json_are_refused(api: Api) -> None:
    user = await api.sign_up()
    big = json.dumps({"events": [event(properties={"p": "x" * 500})] * 40}) + " " * 50_000
    reply = await api.call("POST", "/analytics/events", data=big, token=user.token)
    assert reply.status == 413 and reply.error_code == "payload_too_large"
    reply = await api.call("POST", "/analytics/events", data="NaN", token=user.token)
    assert reply.status in (400, 422)
    reply = await api.call("POST", "/analytics/events", data="{", token=user.token)
    assert reply.status == 400 and reply.error_code == "invalid_json"


async def test_a_token_is_required_and_a_foreign_project_is_not_found(api: Api) -> None:
    reply = await api.call("POST", "/analytics/events", {"events": [event()]})
    assert reply.status == 401
    owner = await api.sign_up()
    stranger = await api.sign_up()
    project = await _project(api, owner)
    reply = await api.call("POST", "/analytics/events",
                           {"project_id": project["id"], "events": [event()]},
                           token=stranger.token)
    assert reply.status == 404
    reply = await api.call("POST", "/analytics/events",
                           {"project_id": str(uuid.uuid4()), "events": [event()]},
                           token=stranger.token)
    assert reply.status == 404


async def test_events_per_user_per_minute_are_limited(limited: Api, db: Database) -> None:
    user = await limited.sign_up()
    other = await limited.sign_up()
    ok = await limited.call("POST", "/analytics/events", {"events": [event()] * 8},
                            token=user.token)
    assert ok.status == 202
    over = await limited.call("POST", "/analytics/events", {"events": [event()] * 3},
                              token=user.token)
    assert over.status == 429 and over.error_code == "rate_limited"
    assert over.headers["Retry-After"] == "60"
    fits = await limited.call("POST", "/analytics/events", {"events": [event()] * 2},
                              token=user.token)
    assert fits.status == 202
    # Another user has a budget of their own.
    theirs = await limited.call("POST", "/analytics/events", {"events": [event()] * 10},
                                token=other.token)
    assert theirs.status == 202
    assert len(await _events(db)) == 20


async def test_a_workspace_with_events_can_still_be_deleted(api: Api, db: Database) -> None:
    # The seed's reference had no delete action: one recorded event blocked the deletion.
    user = await api.sign_up()
    project = await _project(api, user)
    reply = await api.call("POST", "/analytics/events",
                           {"project_id": project["id"], "events": [event()]}, token=user.token)
    assert reply.status == 202
    deleted = await api.call("DELETE", f"/workspaces/{project['workspace_id']}",
                             token=user.token)
    assert deleted.status == 204, deleted.body
    [row] = await _events(db)
    assert row["workspace_id"] is None and str(row["user_id"]) == user.id
