"""The chat socket end to end: real app, real PostgreSQL, fake OpenAI-compatible provider."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from ai.config import AIConfig
from persistence.db import Database
from server.settings import Settings
from tests.ai.helpers import Team, connect
from tests.fakes import anthropic_server, openai_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories
from tests.support.servers import LiveServer

PIECES = ["Use ", "a ", "dict ", "comprehension", ": ", "`{k: v}`", " ✓"]


async def test_two_watchers_see_identical_text_and_reply_is_stored(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    fake_openai.play(Script(chunks=openai_server.stream(PIECES, usage=(40, 9)), delay_s=0.005))
    owner = await connect(chat_server.ws_url, team.conversation, team.owner)
    member = await connect(chat_server.ws_url, team.conversation, team.member)
    await member.ask("how do I build a dict?")
    created_user = await owner.until("message_created")
    assert created_user["message"]["role"] == "user"
    assert created_user["message"]["content"] == "how do I build a dict?"
    placeholder = (await owner.until("message_created"))["message"]
    assert placeholder["role"] == "assistant" and placeholder["content"] == ""
    done = await owner.until_finished()
    member_done = await member.until_finished()
    assert done["type"] == "done" and member_done == done
    message_id = placeholder["id"]
    assert owner.text(message_id) == member.text(message_id) == "".join(PIECES)
    # One frame per provider delta unless a watcher falls behind (then deltas are merged).
    assert 2 <= len([e for e in owner.events if e["type"] == "delta"]) <= len(PIECES)
    assert done["tokens"] == {"input": 40, "output": 9, "total": 49, "estimated": False}
    assert done["model"] == "gpt-fake-1"
    assert done["message"]["content"] == "".join(PIECES)

    async with db.acquire() as conn:
        row = await conn.fetchrow("select * from public.messages where id = $1",
                                  uuid.UUID(message_id))
        job = await conn.fetchrow("select * from public.ai_jobs where conversation_id = $1",
                                  team.conversation)
        usage = await conn.fetchrow(
            "select * from public.usage_records where resource_type = 'ai_tokens'")
    assert row["content"] == "".join(PIECES)
    assert row["tokens_used"] == 9 and row["model"] == "gpt-fake-1"
    meta = row["metadata"]
    assert meta["finish_reason"] == "stop" and meta["cancelled"] is False
    assert meta["failed_partway"] is False and meta["latency_to_first_token_ms"] >= 0
    assert job["status"] == "completed" and job["job_type"] == "chat"
    assert job["tokens_used"] == 49 and job["model"] == "gpt-fake-1"
    assert job["duration_ms"] >= 0 and job["user_id"] == team.member
    # Stored as running from the start (no second round trip while the provider is asked).
    assert job["started_at"] is not None and job["started_at"] <= job["completed_at"]
    assert usage["user_id"] == team.member and usage["workspace_id"] == team.workspace
    assert int(usage["amount"]) == 49 and usage["unit"] == "tokens"
    # The provider got the system prompt and the question.
    sent = fake_openai.requests[0].body["messages"]
    assert sent[0]["role"] == "system" and sent[-1] == {
        "role": "user", "content": "how do I build a dict?"}
    await owner.close()
    await member.close()


async def test_every_watcher_gets_the_announcement_before_any_delta(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    """The provider is asked while the messages are announced; deltas still come after."""
    fake_openai.play(Script(chunks=openai_server.stream(PIECES, usage=(40, 9)), delay_s=0))
    watchers = [await connect(chat_server.ws_url, team.conversation, team.owner)
                for _ in range(20)]
    await watchers[0].ask("quick?")
    for watcher in watchers:
        await watcher.until_finished()
        kinds = [e["type"] for e in watcher.events if e["type"] in ("message_created", "delta")]
        assert kinds[:2] == ["message_created", "message_created"], kinds
        assert kinds.count("message_created") == 2 and "delta" in kinds
    for watcher in watchers:
        await watcher.close()


async def test_late_joiner_gets_text_so_far_then_the_rest(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    pieces = [f"w{i} " for i in range(40)]
    fake_openai.play(Script(chunks=openai_server.stream(pieces), delay_s=0.01))
    first = await connect(chat_server.ws_url, team.conversation, team.owner)
    await first.ask("count")
    placeholder = None
    deltas = 0
    while deltas < 5:
        event = await first.next()
        if event["type"] == "message_created" and event["message"]["role"] == "assistant":
            placeholder = event["message"]
        deltas += event["type"] == "delta"
    assert placeholder is not None
    late = await connect(chat_server.ws_url, team.conversation, team.viewer)
    caught_up = await late.next()
    assert caught_up["type"] == "message_created"
    assert caught_up["message"]["id"] == placeholder["id"]
    catch = await late.next()
    assert catch["type"] == "delta" and catch.get("catch_up") is True
    assert len(catch["text"]) > 0
    await late.until_finished()
    await first.until_finished()
    assert late.text(placeholder["id"]) == first.text(placeholder["id"]) == "".join(pieces)
    await first.close()
    await late.close()


async def test_cancel_keeps_partial_answer_and_closes_upstream(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    fake_openai.play(Script(chunks=openai_server.stream([f"t{i} " for i in range(500)]),
                            delay_s=0.01))
    client = await connect(chat_server.ws_url, team.conversation, team.member)
    await client.ask("go on forever")
    await client.until("delta")
    await client.until("delta")
    await client.send({"type": "cancel"})
    done = await client.until_finished()
    assert done["type"] == "done" and done["cancelled"] is True
    await asyncio.wait_for(fake_openai.disconnected.wait(), 5)
    assert fake_openai.completed == 0
    message = done["message"]
    assert message["metadata"]["cancelled"] is True
    assert message["metadata"]["finish_reason"] == "cancelled"
    assert message["content"] == client.text(message["id"])
    assert message["content"].startswith("t0 t1 ")
    assert done["tokens"]["estimated"] is True
    async with db.acquire() as conn:
        status = await conn.fetchval(
            "select status from public.ai_jobs where conversation_id = $1", team.conversation)
    assert status == "canceled"
    await client.close()


async def test_second_request_while_streaming_is_busy(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    fake_openai.play(Script(chunks=openai_server.stream(["a"] * 30), delay_s=0.01),
                     Script(chunks=openai_server.stream(["second"])))
    owner = await connect(chat_server.ws_url, team.conversation, team.owner)
    member = await connect(chat_server.ws_url, team.conversation, team.member)
    await owner.ask("first")
    await member.until("delta")
    await member.ask("me too")
    error = await member.until("error")
    assert error["code"] == "busy"
    await owner.until_finished()
    await member.until_finished()
    assert not [e for e in owner.events if e["type"] == "error"]
    # Once done, the conversation takes the next question.
    await member.ask("now?")
    done = await member.until("done")
    assert done["message"]["content"] == "second"
    assert len(fake_openai.requests) == 2
    await owner.close()
    await member.close()


async def test_quota_exhausted_refuses_before_calling_the_provider(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        limit = await conn.fetchval(
            "select (limits->>'ai_tokens')::bigint from public.subscription_plans "
            "where slug = 'free'")
        await conn.execute(
            "insert into public.usage_records (user_id, workspace_id, resource_type, amount, "
            "unit) values ($1, $2, 'ai_tokens', $3, 'tokens')", team.member, team.workspace, limit)
    client = await connect(chat_server.ws_url, team.conversation, team.member)
    await client.ask("one more?")
    error = await client.until("error")
    assert error["code"] == "quota_exceeded"
    # What the page needs to offer the upgrade: the payer's plan, limit and use.
    assert (error["limit"], error["used"], error["plan"]) == (limit, limit, "free")
    assert fake_openai.requests == []
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.messages") == 0
    await client.close()
    # The allowance is the payer's (the workspace owner's): the owner is refused too...
    owner = await connect(chat_server.ws_url, team.conversation, team.owner)
    await owner.ask("and me?")
    assert (await owner.until("error"))["code"] == "quota_exceeded"
    await owner.close()
    # ...while a workspace with another payer still has its own allowance.
    fake_openai.play(Script(chunks=openai_server.stream(["ok"])))
    outsider = await connect(chat_server.ws_url, team.other_conversation, team.outsider)
    await outsider.ask("and me?")
    assert (await outsider.until("done"))["message"]["content"] == "ok"
    await outsider.close()


async def test_archived_conversation_refuses_new_questions(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    async with db.service() as conn:
        await conn.execute(
            "update public.conversations set is_archived = true where id = $1", team.conversation
        )
    client = await connect(chat_server.ws_url, team.conversation, team.member)
    await client.ask("still there?")
    assert (await client.until("error"))["code"] == "archived"
    assert fake_openai.requests == []
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.messages") == 0
    await client.close()


async def test_viewer_watches_but_cannot_send_or_cancel(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    viewer = await connect(chat_server.ws_url, team.conversation, team.viewer)
    await viewer.ask("may I?")
    assert (await viewer.until("error"))["code"] == "forbidden"
    await viewer.send({"type": "cancel"})
    assert (await viewer.until("error"))["code"] == "forbidden"
    assert fake_openai.requests == []
    await viewer.close()


async def test_other_workspace_conversation_is_invisible(
    chat_server: LiveServer, team: Team
) -> None:
    for conversation in (team.other_conversation, uuid.uuid4()):
        client = await connect(chat_server.ws_url, conversation, team.member)
        msg = await client.ws.receive(5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4404
        await client.close()


async def test_mid_stream_error_keeps_partial_marked_failed(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    fake_openai.play(Script(chunks=openai_server.mid_stream_error(["half ", "an answer"])))
    client = await connect(chat_server.ws_url, team.conversation, team.owner)
    await client.ask("explain")
    error = await client.until_finished()
    assert error["type"] == "error" and error["code"] == "provider_error"
    record = error["message_record"]
    assert record["content"] == "half an answer"
    assert record["metadata"]["failed_partway"] is True
    async with db.acquire() as conn:
        job = await conn.fetchrow("select status, error from public.ai_jobs")
    assert job["status"] == "failed" and "provider_error" in job["error"]
    assert len(fake_openai.requests) == 1  # never retried after the first token
    await client.close()


async def test_editor_context_puts_the_selected_code_in_the_prompt(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    code = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n"
    async with db.service() as conn:
        file_id = await factories.create_file(conn, team.project, "src/calc.py", code)
        other_ws = await factories.create_workspace(conn, team.outsider)
        other_project = await factories.create_project(conn, other_ws)
        foreign = await factories.create_file(conn, other_project, "secret.py", "TOKEN=1")
    fake_openai.default = Script(chunks=openai_server.stream(["ok"]))
    client = await connect(chat_server.ws_url, team.conversation, team.owner)
    start = code.index("def sub")
    await client.ask("what does this do?", {"file_id": str(file_id),
                                            "selection": {"from": start, "to": len(code)}})
    await client.until("done")
    prompt = fake_openai.requests[-1].body["messages"][-1]["content"]
    assert "def sub(a, b):" in prompt and "def add" not in prompt
    assert "src/calc.py, lines 4-6" in prompt and prompt.endswith("what does this do?")
    await client.ask("and the file?", {"open_file": str(file_id)})
    await client.until("done")
    prompt = fake_openai.requests[-1].body["messages"][-1]["content"]
    assert "def add(a, b):" in prompt and "def sub(a, b):" in prompt
    # History: the earlier question and answer come before the new one; the project
    # context (file tree) is the second system message.
    history = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in history] == ["system", "system", "user", "assistant", "user"]
    assert "- src/calc.py" in history[1]["content"]
    await client.ask("leak it", {"open_file": str(foreign)})
    assert (await client.until("error"))["code"] == "bad_request"
    assert len(fake_openai.requests) == 2
    await client.close()


async def test_no_provider_answers_ai_unavailable(
    live_server: Callable[..., Awaitable[LiveServer]], team: Team
) -> None:
    server = await live_server()  # the test settings: no provider, no embedded model
    client = await connect(server.ws_url, team.conversation, team.owner)
    await client.ask("hello?")
    error = await client.until("error")
    assert error["code"] == "ai_unavailable" and error["message"] == "AI provider not available"
    await client.close()
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        body = await resp.json()
    assert resp.status == 200 and body["chat"]["state"] == "unconfigured"


async def test_anthropic_provider_through_the_chat(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    fake_anthropic: FakeAnthropic,
    team: Team,
) -> None:
    fake_anthropic.play(Script(chunks=anthropic_server.stream(["Bon", "jour"], input_tokens=30)))
    ai = AIConfig(anthropic_api_key="sk-ant-fake", anthropic_base_url=fake_anthropic.url)
    server = await live_server(dataclasses.replace(settings, ai=ai))
    client = await connect(server.ws_url, team.conversation, team.owner)
    await client.ask("say hello in French")
    done = await client.until("done")
    assert done["message"]["content"] == "Bonjour" and done["model"] == "claude-fake-1"
    assert done["tokens"] == {"input": 30, "output": 5, "total": 35, "estimated": False}
    body = fake_anthropic.requests[0].body
    assert body["stream"] is True and body["system"]
    assert body["messages"] == [{"role": "user", "content": "say hello in French"}]
    await client.close()


async def test_embedded_model_that_cannot_start_leaves_the_app_working(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    team: Team,
    tmp_path: Path,
) -> None:
    ai = AIConfig(embedded=True, embedded_model_path=tmp_path / "missing.gguf")
    server = await live_server(dataclasses.replace(settings, ai=ai))
    client = await connect(server.ws_url, team.conversation, team.owner)
    await client.ask("anyone there?")
    error = await client.until("error")
    assert error == {"type": "error", "code": "ai_unavailable",
                     "message": "AI provider not available"}
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        body = await resp.json()
    assert resp.status == 200 and body["status"] == "degraded" and body["failing"] == ["chat"]
    assert body["chat"]["provider"] == "embedded" and body["chat"]["state"] == "failed"
    assert "no GGUF model" in body["chat"]["error"]
    await client.close()


async def test_role_changes_apply_to_open_sockets(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    client = await connect(chat_server.ws_url, team.conversation, team.member)
    async with db.service() as conn:
        await conn.execute("update public.workspace_members set role = 'viewer' "
                           "where workspace_id = $1 and user_id = $2", team.workspace, team.member)
    await client.ask("still allowed?")
    assert (await client.until("error"))["code"] == "forbidden"
    async with db.service() as conn:
        await conn.execute("delete from public.workspace_members "
                           "where workspace_id = $1 and user_id = $2", team.workspace, team.member)
    await client.ask("and now?")
    msg = await client.ws.receive(5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403
    assert fake_openai.requests == []
    await client.close()
