"""Tool calling: both providers' wire formats, and the chat's bounded tool loop end to end
(real app and PostgreSQL, the fake provider asks for tools, the real toolbox answers)."""

from __future__ import annotations

import json
import uuid

from ai.providers.base import ChatMessage, TextDelta, ToolCall, ToolSpec, Usage
from persistence.db import Database
from tests.ai.helpers import Team, connect
from tests.ai.test_providers import anthropic, openai
from tests.fakes import anthropic_server, openai_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories
from tests.support.servers import LiveServer

READ = ToolSpec("read_file", "Read a file", {"type": "object",
                                             "properties": {"path": {"type": "string"}}})
ARGS = json.dumps({"path": "src/app.py", "note": "ünï"})


async def test_openai_tool_call_fragments_become_one_call_and_go_back_as_turns(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.play(Script(chunks=openai_server.tool_calls_stream(
        [("call_a", "read_file", ARGS), ("call_b", "read_file", "{not json")],
        text="Let me look.")))
    provider = openai(fake_openai)
    try:
        events = [e async for e in provider.stream(
            [ChatMessage("user", "what is in app.py?")], max_tokens=64, tools=[READ])]
        calls = [e for e in events if isinstance(e, ToolCall)]
        assert [e.text for e in events if isinstance(e, TextDelta)] == ["Let me look."]
        assert calls == [ToolCall("call_a", "read_file", json.loads(ARGS)),
                         ToolCall("call_b", "read_file", {}, malformed=True)]
        assert isinstance(events[-1], Usage) and events[-1].finish_reason == "tool_calls"
        sent = fake_openai.requests[0].body
        assert sent["tools"] == [{"type": "function", "function": {
            "name": "read_file", "description": "Read a file", "parameters": READ.parameters}}]
        # The follow-up request carries the assistant's calls and the results.
        fake_openai.play(Script(chunks=openai_server.stream(["done"])))
        turns = [ChatMessage("user", "q"), ChatMessage("assistant", "", tool_calls=(calls[0],)),
                 ChatMessage("tool", "print(1)", tool_call_id="call_a")]
        _ = [e async for e in provider.stream(turns, max_tokens=64, tools=[READ])]
        body = fake_openai.requests[1].body["messages"]
        assert body[1] == {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_a", "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps(
                json.loads(ARGS), ensure_ascii=False)}}]}
        assert body[2] == {"role": "tool", "tool_call_id": "call_a", "content": "print(1)"}
    finally:
        await provider.close()


async def test_anthropic_tool_use_blocks_become_calls_and_results_go_back_as_blocks(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.play(Script(chunks=anthropic_server.tool_use_stream(
        [("toolu_1", "read_file", ARGS)], text="Checking.")))
    provider = anthropic(fake_anthropic)
    try:
        events = [e async for e in provider.stream(
            [ChatMessage("system", "s"), ChatMessage("user", "q")], max_tokens=64,
            tools=[READ])]
        assert [e for e in events if isinstance(e, ToolCall)] == [
            ToolCall("toolu_1", "read_file", json.loads(ARGS))]
        assert isinstance(events[-1], Usage) and events[-1].finish_reason == "tool_use"
        assert fake_anthropic.requests[0].body["tools"] == [{
            "name": "read_file", "description": "Read a file", "input_schema": READ.parameters}]
        fake_anthropic.play(Script(chunks=anthropic_server.stream(["ok"])))
        call = ToolCall("toolu_1", "read_file", {"path": "a"})
        turns = [ChatMessage("user", "q"), ChatMessage("assistant", "Checking.",
                                                        tool_calls=(call,)),
                 ChatMessage("tool", "text of a", tool_call_id="toolu_1")]
        _ = [e async for e in provider.stream(turns, max_tokens=64, tools=[READ])]
        assert fake_anthropic.requests[1].body["messages"] == [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file",
                 "input": {"path": "a"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "text of a"}]},
        ]
    finally:
        await provider.close()


async def test_chat_tool_loop_is_bounded_shown_and_stored(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    """A model that never stops asking: 4 rounds of calls, then one request without tools."""
    async with db.service() as conn:
        await factories.create_file(conn, team.project, "src/app.py", "print('hi')\n")
    fake_openai.default = Script(chunks=openai_server.tool_calls_stream(
        [("call_x", "read_file", json.dumps({"path": "src/app.py"})),
         ("call_y", "search_project", json.dumps({"query": "print"}))]))
    fake_openai.play(*[Script(chunks=openai_server.tool_calls_stream(
        [(f"call_{n}", "read_file", json.dumps({"path": "src/app.py"}))])) for n in range(4)],
        Script(chunks=openai_server.stream(["It prints hi."], usage=(50, 4))))
    owner = await connect(chat_server.ws_url, team.conversation, team.owner)
    member = await connect(chat_server.ws_url, team.conversation, team.member)
    await owner.ask("what does app.py do?")
    done = await owner.until("done")
    await member.until("done")
    requests = [r.body for r in fake_openai.requests]
    assert len(requests) == 5  # 4 rounds of tools + the last request, sent without tools
    assert all("tools" in body for body in requests[:4]) and "tools" not in requests[4]
    assert "at most 4 rounds" in requests[0]["messages"][1]["content"]
    # The last request holds every call and its result.
    tool_turns = [m for m in requests[4]["messages"] if m["role"] == "tool"]
    assert len(tool_turns) == 4 and tool_turns[0]["content"].startswith("src/app.py (1 lines)")
    for client in (owner, member):
        calls = [e for e in client.events if e["type"] == "tool_call"]
        results = [e for e in client.events if e["type"] == "tool_result"]
        assert [c["call"]["id"] for c in calls] == ["call_0", "call_1", "call_2", "call_3"]
        assert [c["step"] for c in calls] == [1, 2, 3, 4]
        assert all(r["ok"] and r["summary"] == "read src/app.py (1 lines)" for r in results)
    assert done["message"]["content"] == "It prints hi."
    stored = done["message"]["metadata"]["tool_calls"]
    assert [(c["name"], c["arguments"], c["step"]) for c in stored] == [
        ("read_file", {"path": "src/app.py"}, step) for step in (1, 2, 3, 4)]
    assert stored[0]["result"] == "src/app.py (1 lines):\nprint('hi')\n"
    # Tokens of every request are counted.
    assert done["tokens"]["input"] == 4 * 30 + 50
    async with db.acquire() as conn:
        row = await conn.fetchrow("select metadata from public.messages where id = $1",
                                  uuid.UUID(done["message_id"]))
    assert len(row["metadata"]["tool_calls"]) == 4
    await owner.close()
    await member.close()


async def test_search_and_unknown_tools_answer_the_model(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        await factories.create_file(conn, team.project, "a.py", "x = 1\nPRINT_ME = 2\n")
        await factories.create_file(conn, team.project, "b.py", "print_me()\n")
    fake_openai.play(
        Script(chunks=openai_server.tool_calls_stream([
            ("c1", "search_project", json.dumps({"query": "print_me"})),
            ("c2", "delete_everything", "{}"),
            ("c3", "read_file", json.dumps({"path": "nope.py"}))])),
        Script(chunks=openai_server.stream(["found"])))
    client = await connect(chat_server.ws_url, team.conversation, team.owner)
    await client.ask("where is print_me?")
    await client.until("done")
    results = {e["call_id"]: e for e in client.events if e["type"] == "tool_result"}
    assert results["c1"]["ok"] and results["c1"]["summary"].endswith("2 line(s) in 2 file(s)")
    assert not results["c2"]["ok"] and results["c2"]["summary"] == "unknown tool"
    assert not results["c3"]["ok"] and results["c3"]["summary"] == "nope.py: not found"
    tool_turns = [m for m in fake_openai.requests[1].body["messages"] if m["role"] == "tool"]
    assert tool_turns[0]["content"] == "a.py:2: PRINT_ME = 2\nb.py:1: print_me()"
    await client.close()


async def test_run_code_tool_runs_in_the_sandbox_and_the_model_reads_the_output(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        await factories.create_file(conn, team.project, "calc.py", "print(6 * 7)\n")
    fake_openai.play(
        Script(chunks=openai_server.tool_calls_stream([
            ("r1", "run_code", json.dumps({"path": "calc.py"})),
            ("r2", "run_code", json.dumps({"code": "import sys; sys.exit(3)",
                                           "language": "python"}))])),
        Script(chunks=openai_server.stream(["It prints 42."])))
    client = await connect(chat_server.ws_url, team.conversation, team.owner)
    await client.ask("what does calc.py print?")
    done = await client.until("done", timeout=60)
    results = {e["call_id"]: e for e in client.events if e["type"] == "tool_result"}
    assert results["r1"]["ok"] and results["r1"]["summary"].startswith("ran calc.py")
    assert results["r2"]["ok"] and results["r2"]["summary"].endswith("exit 3")
    tool_turns = [m for m in fake_openai.requests[1].body["messages"] if m["role"] == "tool"]
    assert "stdout:\n42" in tool_turns[0]["content"]
    assert done["message"]["metadata"]["tool_calls"][0]["name"] == "run_code"
    async with db.acquire() as conn:
        runs = await conn.fetchval(
            "select count(*) from public.code_executions where project_id = $1", team.project)
    assert runs == 2  # like the Run button: stored, counted
    await client.close()
