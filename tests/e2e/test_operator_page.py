"""The operator page in a real Chromium: a service operator signs in and sees every panel
plotted (uPlot canvases), for the whole service and for one workspace, after some seconds of
real traffic (REST calls, runs in the sandbox, chat replies from a fake OpenAI-compatible
provider, page loads reported like the IDE page does). The screenshot is
``test-artifacts/e2e/operator/01-operator-service.png``."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from persistence import observability as store
from persistence.db import Database
from server.settings import Settings
from tests.e2e.harness import PASSWORD, Api, IdeServer, run_browser, start_ide_server
from tests.fakes.openai_server import FakeOpenAI, stream
from tests.fakes.sse_server import Script
from tests.support.observability import eventually, rows

pytestmark = pytest.mark.timeout(180)

ANSWER = ["Use", " `print", "(x)`", " to", " show", " a", " value", "."]


@pytest.fixture
def exec_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="icreate-e2e-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def ide(
    settings: Settings, exec_root: Path, fake_openai: FakeOpenAI
) -> AsyncIterator[IdeServer]:
    observability = dataclasses.replace(
        settings.observability, metrics_period_s=1.0, api_log_flush_s=0.1
    )
    ai = dataclasses.replace(
        settings.ai, provider="openai", base_url=fake_openai.url, api_key="sk-fake",
        model="gpt-fake-1", embedded=False,
    )
    server = await start_ide_server(
        dataclasses.replace(settings, observability=observability, ai=ai), exec_root
    )
    yield server
    await server.stop()


async def test_the_operator_page_plots_every_panel(
    ide: IdeServer, db: Database, fake_openai: FakeOpenAI
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(ide.url, http)
        operator = await api.sign_up("ops@example.test", "Olga Operator")
        member = await api.sign_up("dev@example.test", "Dev")
        stage = await api.shared_project(operator, member)
        project_id = stage["project"]["id"]
        main = await api.create_file(member, project_id, "main.py", "print(6 * 7)\n")
        conversation = await api.call(
            "POST", f"/projects/{project_id}/conversations", member, {"title": "Help"}
        )
        # Twelve seconds of traffic, so the per-second aggregates make lines.
        for second in range(12):
            for _ in range(2 + second % 4 * 3):
                await api.call("GET", f"/projects/{project_id}", operator)
                await api.call("GET", f"/projects/{project_id}/files", member)
            await api.call("POST", "/analytics/events", member, {
                "project_id": project_id,
                "events": [{"name": "page_load", "category": "performance",
                            "properties": {"load_ms": 300 + 25 * (second % 5), "ttfb_ms": 9}}],
            })
            if second % 3 == 1:
                await api.call("POST", f"/projects/{project_id}/executions", member,
                               {"file_id": main["id"]})
            if second % 4 == 2:
                fake_openai.play(Script(chunks=stream(ANSWER), delay_s=0.02,
                                        first_delay_s=0.1 + 0.05 * second))
                await api.call("POST", f"/conversations/{conversation['id']}/messages", member,
                               {"content": "How do I show a value?"})
            await asyncio.sleep(0.6)
    async with db.service() as conn:
        assert await store.grant_operator(conn, operator.email, "e2e")
    await eventually(
        lambda: rows(db, "select distinct metric_name from public.performance_metrics"
                         " where metric_name in ('page.load.p50', 'execution.wall_time.p50',"
                         " 'ai.time_to_first_token.p50')"),
        lambda found: len(found) == 3, what="page-load, execution and AI metrics",
    )

    result = await run_browser("operator", {
        "url": ide.url,
        "user": {"email": operator.email, "password": PASSWORD},
        "workspace_id": stage["workspace"]["id"],
    })
    assert result["problems"] == []
    service = {panel["id"]: panel for panel in result["service"]}
    assert {"requests", "latency", "jobs", "database", "ai_latency", "ai_speed",
            "execution_time", "page_load", "ai_usage", "executions"} <= set(service)
    assert all(panel["canvas"] for panel in result["service"])
    assert service["latency"]["legend"][-3:] == ["p50", "p95", "p99"]
    assert {panel["id"] for panel in result["workspace"]} == {
        "requests", "latency", "ai_usage", "executions"}
    assert Path(result["screenshot"]).stat().st_size > 10_000
