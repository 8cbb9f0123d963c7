"""Code analyses end to end: real analysers, a job on the queue, the fake model ranking by id,
the cache (hit, miss, invalidated by a change), the result on the project channel."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from persistence.db import Database
from tests.ai.helpers import Team, token
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories
from tests.support.servers import LiveServer

CODE = (
    "import subprocess\n"
    "\n"
    "def run(cmd):\n"
    "    password = 'hunter2'\n"
    "    return subprocess.call(cmd, shell=True)\n"
    "\n"
    "def calc(expr):\n"
    "    return eval(expr)\n"
)


async def call(server: LiveServer, user: uuid.UUID, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, f"{server.url}/api/v1{path}", json=body,
        headers={"authorization": f"Bearer {token(user)}"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def project_events(server: LiveServer, team: Team) -> tuple[
    aiohttp.ClientSession, aiohttp.ClientWebSocketResponse
]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(
        f"{server.ws_url}/ws/projects/{team.project}?token={token(team.member)}")
    hello = json.loads((await ws.receive(10)).data)
    assert hello["type"] == "hello"
    return http, ws


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str,
                     timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(max(0.01, deadline - time.monotonic()))
        event: dict[str, Any] = json.loads(msg.data)
        if event["type"] == kind:
            return event


async def test_security_analysis_is_ranked_by_id_cached_and_invalidated(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        file_id = await factories.create_file(conn, team.project, "app/tools.py", CODE)
    # The model ranks eval first, invents an F9 and a line number: both are ignored.
    fake_openai.play(Script(chunks=openai_server.stream([
        "F2: eval runs any text as code; use ast.literal_eval.\n",
        "F9: line 99 has a bug\nF1: shell=True lets cmd inject commands.\n",
        "Summary: two real risks.",
    ], usage=(300, 40))))
    http, ws = await project_events(chat_server, team)
    try:
        status, answer = await call(chat_server, team.member, "POST",
                                    f"/files/{file_id}/analyses", {"type": "security"})
        assert status == 202 and answer["cached"] is False and answer["status"] == "pending"
        event = await next_event(ws, "analysis.completed")
    finally:
        await ws.close()
        await http.close()
    analysis = event["analysis"]
    assert event["job_id"] == answer["job_id"] and analysis["stale"] is False
    findings = analysis["findings"]
    # bandit's findings with bandit's lines; the model's order first, its words attached.
    by_rule = {f["rule"]: f for f in findings}
    assert {"B602", "B307", "B105"} <= set(by_rule)
    assert (by_rule["B602"]["line_start"], by_rule["B307"]["line_start"]) == (5, 8)
    assert [f["rule"] for f in findings[:2]] == ["B307", "B602"]
    assert [f["rank"] for f in findings[:2]] == [1, 2]
    assert findings[0]["explanation"].startswith("eval runs any text")
    assert all(f["rank"] is None for f in findings[2:])
    assert analysis["ranked_by_model"] is True and analysis["summary"] == "two real risks."
    assert analysis["model"] == "gpt-fake-1" and analysis["lines"] is None
    prompt = fake_openai.requests[0].body["messages"][-1]["content"]
    assert "5 |     return subprocess.call(cmd, shell=True)" in prompt
    assert "[bandit B602, high, lines 5-5]" in prompt
    async with db.acquire() as conn:
        job = await conn.fetchrow("select * from public.ai_jobs where id = $1",
                                  uuid.UUID(answer["job_id"]))
        usage = await conn.fetchval(
            "select sum(amount) from public.usage_records where resource_type = 'ai_tokens'")
    assert job["status"] == "completed" and job["job_type"] == "analyze"
    assert job["tokens_used"] == 340 and int(usage) == 340

    # Hit: the same text, type and model answer at once, without the model.
    status, again = await call(chat_server, team.member, "POST",
                               f"/files/{file_id}/analyses", {"type": "security"})
    assert status == 200 and again["cached"] is True
    assert again["analysis"]["id"] == analysis["id"] and len(fake_openai.requests) == 1

    # A change invalidates: the stored result is stale, the next request is a miss, and
    # the new result replaces the old one.
    status, _ = await call(chat_server, team.owner, "PUT", f"/files/{file_id}/content",
                           {"content": CODE.replace("eval(expr)", "int(expr)")})
    assert status == 200
    status, listed = await call(chat_server, team.viewer, "GET", f"/files/{file_id}/analyses")
    assert status == 200 and [i["stale"] for i in listed["items"]] == [True]
    fake_openai.play(Script(chunks=openai_server.stream(["F1: shell injection.\nSummary: one."])))
    status, miss = await call(chat_server, team.member, "POST", f"/files/{file_id}/analyses",
                              {"type": "security"})
    assert status == 202
    deadline = time.monotonic() + 30
    while True:
        status, listed = await call(chat_server, team.viewer, "GET",
                                    f"/files/{file_id}/analyses")
        if listed["items"] and listed["items"][0]["job_id"] == miss["job_id"]:
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.05)
    assert len(listed["items"]) == 1 and listed["items"][0]["stale"] is False
    assert "B307" not in {f["rule"] for f in listed["items"][0]["findings"]}


async def test_complexity_of_a_selection_and_javascript_findings(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(12))
    python = "def small():\n    return 1\n\n\ndef big(x):\n" + branches + "    return -1\n"
    javascript = ("export async function load(ids) {\n  const out = []\n"
                  "  for (const id of ids) { out.push(await fetch(id)) }\n  return out\n}\n")
    async with db.service() as conn:
        py_id = await factories.create_file(conn, team.project, "calc.py", python)
        js_id = await factories.create_file(conn, team.project, "web/load.js", javascript)
    fake_openai.default = Script(chunks=openai_server.stream(["F1: split it.\nSummary: ok"]))
    http, ws = await project_events(chat_server, team)
    try:
        status, _ = await call(chat_server, team.member, "POST", f"/files/{py_id}/analyses",
                               {"type": "complexity",
                                "selection": {"from_line": 5, "to_line": 30}})
        assert status == 202
        py = (await next_event(ws, "analysis.completed"))["analysis"]
        status, _ = await call(chat_server, team.member, "POST", f"/files/{js_id}/analyses",
                               {"type": "performance"})
        assert status == 202
        js = (await next_event(ws, "analysis.completed"))["analysis"]
    finally:
        await ws.close()
        await http.close()
    assert py["lines"] == [5, 30]
    assert [(f["tool"], f["rule"], f["line_start"], f["line_end"]) for f in py["findings"]] == [
        ("radon", "CC-C", 5, 30), ("ruff", "PLR0911", 5, 5)]  # too many returns
    assert py["findings"][0]["severity"] == "medium" and py["findings"][0]["rank"] == 1
    # The selection's lines only, numbered as in the file.
    prompt = fake_openai.requests[0].body["messages"][-1]["content"]
    assert " 5 | def big(x):" in prompt and "def small" not in prompt
    assert [(f["rule"], f["line_start"]) for f in js["findings"]] == [("no-await-in-loop", 3)]
    assert js["language"] == "javascript" and js["tools"] == ["eslint"]


async def test_viewers_cannot_start_analyses_and_other_files_are_refused(
    chat_server: LiveServer, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        file_id = await factories.create_file(conn, team.project, "a.py", "x = 1\n")
        text_id = await factories.create_file(conn, team.project, "notes.txt", "hello\n")
    status, body = await call(chat_server, team.viewer, "POST", f"/files/{file_id}/analyses",
                              {"type": "explain"})
    assert status == 403
    status, body = await call(chat_server, team.member, "POST", f"/files/{text_id}/analyses",
                              {"type": "explain"})
    assert status == 422 and body["error"]["code"] == "unsupported_language"
    status, body = await call(chat_server, team.outsider, "GET", f"/files/{file_id}/analyses")
    assert status == 404
