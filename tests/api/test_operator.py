"""The operator page's reads, and performance_metrics behind them: admins see their
workspace, service operators see everything, a member of another workspace sees nothing of
yours (through the endpoint and directly under RLS)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from persistence import observability as store
from persistence.db import Database
from server.settings import Settings
from tests.api.client import Api, User
from tests.support.observability import eventually, observed, rows
from tests.support.servers import LiveServer

PERF = (
    "select metric_name, metric_type, value, unit, tags, recorded_at"
    " from public.performance_metrics"
)


@pytest.fixture
async def quick(
    settings: Settings, live_server: Callable[..., Awaitable[LiveServer]]
) -> AsyncIterator[Api]:
    """A server aggregating performance_metrics every second (instead of every minute)."""
    server = await live_server(observed(settings, metrics_period_s=1.0))
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)


async def _workspace(api: Api, user: User, name: str) -> dict[str, Any]:
    workspace: dict[str, Any] = await api.ok("POST", "/workspaces", {"name": name},
                                             token=user.token)
    return workspace


def _total(panels: list[dict[str, Any]], panel: str, series: str) -> float:
    [found] = [p for p in panels if p["id"] == panel]
    [values] = [s["values"] for s in found["series"] if s["name"] == series]
    return sum(v for v in values if v is not None)


async def test_performance_metrics_are_written_each_period(quick: Api, db: Database) -> None:
    user = await quick.sign_up()
    for _ in range(5):
        await quick.ok("GET", "/me", token=user.token)
    page_load = {"name": "page_load", "category": "performance",
                 "properties": {"page": "ide", "load_ms": 420.5, "ttfb_ms": 12}}
    reply = await quick.call("POST", "/analytics/events", {"events": [page_load]},
                             token=user.token)
    assert reply.status == 202

    def complete(found: list[Any]) -> bool:
        names = {r["metric_name"] for r in found}
        return {"http.server.duration.p95", "db.query.p50", "page.load.p99"} <= names

    found = await eventually(lambda: rows(db, PERF), complete, what="metrics of a period")
    me = [r for r in found if r["metric_name"] == "http.server.duration.p99"
          and r["tags"]["route"] == "GET /api/v1/me"]
    assert me and sum(r["tags"]["count"] for r in me) == 5
    assert all(r["metric_type"] == "api_latency" and r["unit"] == "ms" for r in me)
    assert all(r["tags"]["period_s"] == 1.0 and r["tags"]["instance"] for r in me)
    assert all(r["recorded_at"].microsecond == 0 for r in me)
    [load] = [r for r in found if r["metric_name"] == "page.load.p50"]
    assert load["metric_type"] == "page_load" and float(load["value"]) == 420.5
    db_rows = [r for r in found if r["metric_name"] == "db.query.p95"]
    assert db_rows and all(r["metric_type"] == "db_query" for r in db_rows)


async def test_admins_see_their_workspace_and_nobody_elses(
    quick: Api, db: Database
) -> None:
    alice, bob, viewer = await quick.sign_up(), await quick.sign_up(), await quick.sign_up()
    mine = await _workspace(quick, alice, "Alice's")
    theirs = await _workspace(quick, bob, "Bob's")
    await quick.ok("POST", f"/workspaces/{mine['id']}/members",
                   {"email": viewer.email, "role": "member"}, token=alice.token)
    for _ in range(3):
        await quick.ok("GET", f"/workspaces/{mine['id']}", token=alice.token)
    await quick.ok("GET", f"/workspaces/{theirs['id']}", token=bob.token)
    for workspace, count in ((mine, 4), (theirs, 1)):
        await eventually(
            lambda w=workspace: rows(db, "select 1 from public.api_logs where workspace_id = $1",
                                     uuid.UUID(w["id"])),
            lambda found, n=count: len(found) >= n, what="requests logged",
        )

    series = await quick.ok("GET", f"/operator/series?workspace_id={mine['id']}&minutes=10",
                            token=alice.token)
    assert series["scope"] == "workspace" and series["step_s"] == 60
    assert len(series["times"]) == 10 and series["times"][-1] % 60 == 0
    fine = await quick.ok(
        "GET", f"/operator/series?workspace_id={mine['id']}&minutes=2&step_s=5",
        token=alice.token)
    assert len(fine["times"]) == 24 and _total(fine["panels"], "requests", "requests") >= 4
    reply = await quick.call("GET", "/operator/series?minutes=1440&step_s=5", token=alice.token)
    assert reply.status == 422
    assert _total(series["panels"], "requests", "requests") >= 4
    assert {p["id"] for p in series["panels"]} == {
        "requests", "latency", "ai_usage", "executions"}

    # Bob administers his own workspace only: Alice's is not found, his shows only his.
    reply = await quick.call("GET", f"/operator/series?workspace_id={mine['id']}",
                             token=bob.token)
    assert reply.status == 404
    own = await quick.ok("GET", f"/operator/series?workspace_id={theirs['id']}",
                         token=bob.token)
    assert _total(own["panels"], "requests", "requests") == 1
    # A plain member of Alice's workspace is not an admin of it.
    reply = await quick.call("GET", f"/operator/series?workspace_id={mine['id']}",
                             token=viewer.token)
    assert reply.status == 403
    # The whole service is for operators.
    reply = await quick.call("GET", "/operator/series", token=alice.token)
    assert reply.status == 403 and reply.error_code == "not_operator"
    scopes = await quick.ok("GET", "/operator/scopes", token=bob.token)
    assert scopes == {"operator": False, "workspaces": [
        {"id": theirs["id"], "name": "Bob's", "role": "owner"}]}


async def test_rls_hides_other_workspaces_rows(quick: Api, db: Database) -> None:
    alice, bob, member = await quick.sign_up(), await quick.sign_up(), await quick.sign_up()
    mine = await _workspace(quick, alice, "Alice's")
    await _workspace(quick, bob, "Bob's")
    await quick.ok("POST", f"/workspaces/{mine['id']}/members",
                   {"email": member.email, "role": "member"}, token=alice.token)
    project = await quick.ok("POST", f"/workspaces/{mine['id']}/projects", {"name": "P"},
                             token=alice.token)
    await quick.ok("POST", "/analytics/events", {
        "project_id": project["id"],
        "events": [{"name": "file_opened", "category": "editor"}]}, token=alice.token)
    async with db.service() as conn:
        await conn.execute(
            "insert into public.error_logs (project_id, error_type, message, severity)"
            " values ($1, 'E', 'm', 'error')", uuid.UUID(project["id"]))
        await conn.execute(
            "insert into public.usage_records (user_id, workspace_id, resource_type, amount,"
            " unit) values ($1, $2, 'executions', 1, 'runs')",
            uuid.UUID(alice.id), uuid.UUID(mine["id"]))
    await eventually(
        lambda: rows(db, "select 1 from public.api_logs where workspace_id = $1",
                     uuid.UUID(mine["id"])),
        lambda found: len(found) >= 2, what="alice's requests logged",
    )
    await eventually(
        lambda: rows(db, PERF + " where metric_name = 'http.server.duration.p50'"),
        lambda found: len(found) > 0, what="request metrics",
    )

    tables = {
        "api_logs": "select count(*) from public.api_logs where workspace_id = $1",
        "analytics_events": "select count(*) from public.analytics_events"
                            " where workspace_id = $1",
        "error_logs": "select count(*) from public.error_logs e join public.projects p"
                      " on p.id = e.project_id where p.workspace_id = $1",
        "usage_records": "select count(*) from public.usage_records where workspace_id = $1",
    }

    async def visible(user: User) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with db.as_user(user.id) as conn:
            for name, query in tables.items():
                counts[name] = await conn.fetchval(query, uuid.UUID(mine["id"]))
            counts["performance_metrics"] = await conn.fetchval(
                "select count(*) from public.performance_metrics")
            counts["background_jobs"] = await conn.fetchval(
                "select count(*) from public.background_jobs")
        return counts

    alices = await visible(alice)
    assert all(alices[name] >= 1 for name in tables), alices
    assert alices["performance_metrics"] == 0
    assert set((await visible(bob)).values()) == {0}
    assert (await visible(member))["api_logs"] == 0

    # An operator (granted the way the CLI does) sees the service's own aggregates too.
    async with db.service() as conn:
        assert await store.grant_operator(conn, bob.email, "test")
    assert (await visible(bob))["performance_metrics"] > 0
    service = await quick.ok("GET", "/operator/series?minutes=5", token=bob.token)
    assert service["scope"] == "service"
    assert {"requests", "latency", "jobs", "database", "ai_usage"} <= {
        p["id"] for p in service["panels"]}
    assert _total(service["panels"], "requests", "requests") > 0
    async with db.service() as conn:
        assert await store.revoke_operator(conn, bob.email)
    reply = await quick.call("GET", "/operator/series", token=bob.token)
    assert reply.status == 403


async def test_the_endpoints_are_in_the_openapi_document(api: Api) -> None:
    reply = await api.call("GET", "/openapi.json")
    paths = reply.body["paths"]
    assert "post" in paths["/analytics/events"]
    assert "get" in paths["/operator/series"] and "get" in paths["/operator/scopes"]
