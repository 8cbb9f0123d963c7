"""AI edits end to end: the assistant writes into the document as a peer while two stock
Node y-websocket clients type inside and around the range (fake providers' wire formats),
cancel with keep or rollback, a chat answer applied to the file, metering and the record."""

from __future__ import annotations

import asyncio
import random
import re
import uuid

from persistence.db import Database
from tests.ai.edit_helpers import ProjectEvents, Typist, call
from tests.ai.helpers import Team, token
from tests.collab.node_agent import NodeAgent, wait_until
from tests.fakes import anthropic_server, openai_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support import factories
from tests.support.servers import LiveServer

HEAD, RANGE, TAIL = "def head():\n    pass\n# <<\n", "    old = 1\n    older = 2\n", "# >>\nEND\n"
ANSWER = [f"{n}" * 3 + ("\n" if n % 4 == 3 else "") for n in range(10)] * 3


async def open_typists(server: LiveServer, team: Team, file_id: uuid.UUID,
                       seed: int) -> tuple[Typist, Typist]:
    rng = random.Random(seed)
    agents = [await NodeAgent.start(server.ws_url, file_id, token(user))
              for user in (team.owner, team.member)]
    for agent in agents:
        await agent.wait_synced()
    return Typist(agents[0], 0x4E00, rng), Typist(agents[1], 0xAC00, rng)


async def converged(typists: tuple[Typist, Typist], server: LiveServer, team: Team,
                    file_id: uuid.UUID) -> str:
    async def same() -> bool:
        texts = [await t.agent.text() for t in typists]
        status, row = await call(server, team.owner, "GET", f"/files/{file_id}")
        return status == 200 and texts[0] == texts[1] == row["content"]

    await wait_until(same, 20)
    final: str = await typists[0].agent.text()
    return final


def check_keystrokes(final: str, typists: tuple[Typist, Typist]) -> None:
    """Every keystroke of each typist is in the text, once."""
    for typist in typists:
        assert sorted(c for c in final if typist.owns(c)) == sorted(typist.typed), final


async def test_edit_streams_while_two_node_clients_type_inside_and_around_the_range(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    for seed in (1, 2, 3):  # a few random schedules, each on a file of its own
        async with db.service() as conn:
            file_id = await factories.create_file(
                conn, team.project, f"src/edit{seed}.py", HEAD + RANGE + TAIL)
        fake_openai.play(Script(chunks=openai_server.stream(
            ["```python\n", *ANSWER, "\n```"], usage=(120, 60)), delay_s=0.01))
        events = await ProjectEvents.open(chat_server, team.project, team.viewer)
        a, b = await open_typists(chat_server, team, file_id, seed)
        try:
            start = len(HEAD)
            status, body = await call(chat_server, team.member, "POST",
                                      f"/files/{file_id}/ai-edits", {
                                          "instruction": "use digits",
                                          "selection": {"from": start,
                                                        "to": start + len(RANGE)}})
            assert status == 202, body
            edit = body["edit"]
            started = await events.wait("ai_edit.started", id=edit["id"])
            assert started["edit"]["client_id"] == edit["client_id"]
            # Typing while the model writes: A inside the range (among the new text), B
            # before it and after it.
            cursor_seen: list[int] = []
            for step in range(24):
                await a.type_between("# <<\n", "# >>")
                if step % 2:
                    await b.type_between(None, "# <<")
                else:
                    await b.type_between("# >>", None)
                seen = await a.agent.call("cursor_of", client=edit["client_id"])
                if seen is not None:
                    cursor_seen.append(seen)
                await asyncio.sleep(0.01)
            finished = await events.wait("ai_edit.finished", id=edit["id"])
            final = await converged((a, b), chat_server, team, file_id)
        finally:
            await events.close()
            await a.agent.stop()
            await b.agent.stop()
        written = "".join(ANSWER) + "\n"  # the fences dropped
        assert finished["edit"]["outcome"] == "completed" and finished["edit"]["chars"] == len(
            written)
        check_keystrokes(final, (a, b))
        # The range is gone, the model's text is whole and in order between the markers.
        assert "old = 1" not in final and "older = 2" not in final
        assert "".join(re.findall(r"\d", final)) == re.sub(r"\D", "", written)
        between = final[final.index("# <<") : final.index("# >>")]
        assert re.sub(r"\D", "", between) == re.sub(r"\D", "", written)
        assert "```" not in final
        # Yjs resolved the Assistant's cursor (its awareness) inside the document.
        assert cursor_seen and all(0 < c <= len(final) for c in cursor_seen)
        async with db.acquire() as conn:
            job = await conn.fetchrow("select * from public.ai_jobs where id = $1",
                                      uuid.UUID(edit["id"]))
        assert job["status"] == "completed" and job["job_type"] == "refactor"
        assert job["tokens_used"] == 180 and job["output"]["outcome"] == "completed"
        assert job["output"]["text"] == written
    request = fake_openai.requests[0].body["messages"][-1]["content"]
    assert "<<<SELECTION>>>    old = 1\n    older = 2\n<<<END SELECTION>>>" in request


async def test_cancel_keeps_or_rolls_back_and_typing_survives_both(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team, db: Database
) -> None:
    for keep in (True, False):
        async with db.service() as conn:
            file_id = await factories.create_file(
                conn, team.project, f"cancel_{keep}.py", HEAD + RANGE + TAIL)
        fake_openai.play(Script(chunks=openai_server.stream(["1111\n", "2222\n"] + ["3"] * 500),
                                delay_s=0.02))
        events = await ProjectEvents.open(chat_server, team.project, team.owner)
        a, b = await open_typists(chat_server, team, file_id, 7)
        try:
            status, body = await call(chat_server, team.owner, "POST",
                                      f"/files/{file_id}/ai-edits", {
                                          "instruction": "x",
                                          "selection": {"from": len(HEAD),
                                                        "to": len(HEAD + RANGE)}})
            assert status == 202
            edit_id = body["edit"]["id"]
            await wait_until(lambda typist=a: _has(typist, "2222"), 20)
            await b.type_at(0)
            await a.type_between("# >>", None)
            status, _ = await call(chat_server, team.member, "POST",
                                   f"/ai-edits/{edit_id}/cancel", {"keep": keep})
            assert status == 200
            finished = await events.wait("ai_edit.finished", id=edit_id)
            final = await converged((a, b), chat_server, team, file_id)
        finally:
            await events.close()
            await a.agent.stop()
            await b.agent.stop()
        check_keystrokes(final, (a, b))
        assert finished["edit"]["status"] == "canceled"
        if keep:
            assert finished["edit"]["outcome"] == "kept"
            assert "1111\n2222\n" in final and "old = 1" not in final
        else:
            assert finished["edit"]["outcome"] == "rolled_back"
            assert not re.search(r"\d{2}", final) and RANGE in final
        assert fake_openai.disconnects >= 1  # the provider's stream was closed
        status, _ = await call(chat_server, team.owner, "POST",
                                   f"/ai-edits/{edit_id}/cancel", {"keep": True})
        assert status == 409


async def _has(typist: Typist, needle: str) -> bool:
    return needle in await typist.agent.text()


async def test_anthropic_edit_a_chat_answer_applied_and_refusals(
    live_server: object, fake_anthropic: FakeAnthropic, settings: object, team: Team,
    db: Database,
) -> None:
    import dataclasses

    from ai.config import AIConfig

    ai = AIConfig(anthropic_api_key="sk-ant-fake", anthropic_base_url=fake_anthropic.url,
                  retry_base_s=0.05)
    server = await live_server(dataclasses.replace(settings, ai=ai))  # type: ignore[operator]
    async with db.service() as conn:
        file_id = await factories.create_file(conn, team.project, "a.js", "let x = 1\n")
        answer = await conn.fetchval(
            "insert into public.messages (conversation_id, role, content) values ($1, "
            "'assistant', $2) returning id", team.conversation,
            "Here:\n```js\nconst x = 2\n```\nDone.")
    fake_anthropic.play(Script(chunks=anthropic_server.stream(["const ", "x = 3", "\n"])))
    events = await ProjectEvents.open(server, team.project, team.owner)
    try:
        status, body = await call(server, team.owner, "POST", f"/files/{file_id}/ai-edits",
                                  {"instruction": "make it const 3"})
        assert status == 202
        await events.wait("ai_edit.finished", id=body["edit"]["id"])
        status, row = await call(server, team.owner, "GET", f"/files/{file_id}")
        assert row["content"] == "const x = 3\n"
        # A chat answer's code block written into the file (no model call, no tokens).
        status, body = await call(server, team.member, "POST", f"/files/{file_id}/ai-edits",
                                  {"message_id": str(answer),
                                   "selection": {"from": 0, "to": 12}})
        assert status == 202
        done = await events.wait("ai_edit.finished", id=body["edit"]["id"])
        assert done["edit"]["source"] == "message" and done["edit"]["tokens"] is None
        status, row = await call(server, team.owner, "GET", f"/files/{file_id}")
        assert row["content"] == "const x = 2\n"
        assert len(fake_anthropic.requests) == 1
        # Refusals: a viewer, both sources at once, a message of another project.
        status, body = await call(server, team.viewer, "POST", f"/files/{file_id}/ai-edits",
                                  {"instruction": "x"})
        assert status == 403
        status, body = await call(server, team.owner, "POST", f"/files/{file_id}/ai-edits",
                                  {"instruction": "x", "message_id": str(answer)})
        assert status == 422
        status, body = await call(server, team.outsider, "GET",
                                  f"/ai-edits/{done['edit']['id']}")
        assert status == 404
        status, body = await call(server, team.viewer, "GET", f"/ai-edits/{done['edit']['id']}")
        assert status == 200 and body["edit"]["status"] == "completed"
    finally:
        await events.close()
