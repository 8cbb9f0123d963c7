"""The reference IDE page in a real Chromium, as two people in two browser contexts.

Each test sets the stage over the REST API (users, a shared workspace, files), then runs
one scenario of ``browser.mjs`` (Playwright) and checks what both windows showed.
Screenshots of every step land in ``test-artifacts/e2e/<scenario>/``.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.oauth.config import OAuthConfig
from server.settings import Settings
from tests.e2e.harness import PASSWORD, Api, IdeServer, User, run_browser, start_ide_server
from tests.fakes.oauth_providers import FakeOAuthProvider, FakeUser
from tests.fakes.openai_server import FakeOpenAI, stream
from tests.fakes.sse_server import Script

pytestmark = pytest.mark.timeout(180)

ANSWER = ["Sure", "!", " Use", " `print", "(x)`", " to", " show", " x", "."]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def exec_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="icreate-e2e-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def ide(
    settings: Settings, fake_openai: FakeOpenAI, exec_root: Path
) -> AsyncIterator[IdeServer]:
    ai = dataclasses.replace(
        settings.ai, provider="openai", base_url=fake_openai.url, api_key="sk-fake",
        model="gpt-fake-1", embedded=False,
    )
    server = await start_ide_server(dataclasses.replace(settings, ai=ai), exec_root)
    yield server
    await server.stop()


@pytest.fixture
async def api(ide: IdeServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(ide.url, http)


def creds(user: User) -> dict[str, str]:
    return {"email": user.email, "password": PASSWORD, "name": user.name}


async def pair(api: Api, role: str = "member") -> tuple[User, User, dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    alice = await api.sign_up(f"alice-{tag}@example.com", "Alice")
    bob = await api.sign_up(f"bob-{tag}@example.com", "Bob")
    stage = await api.shared_project(alice, bob, role=role)
    return alice, bob, stage


def no_problems(result: dict[str, Any]) -> None:
    problems = [p for p in result["problems"] if "Content Security Policy" in p or "pageerror" in p]
    assert not problems, problems


async def test_sign_up_in_the_page_gets_a_starter_project_under_csp(ide: IdeServer) -> None:
    user = {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD,
            "name": "Newcomer"}
    result = await run_browser("signup", {"url": ide.url, "user": user})
    assert result["user"].strip() == "Newcomer"
    assert result["hash"].startswith("#project=")
    assert "main.py" in result["tree"]
    assert result["inline_script_ran"] is False, "the CSP must refuse inline scripts"
    assert result["storage"]["local"] == [], "tokens never go to localStorage"
    no_problems(result)


async def test_two_users_type_into_one_file_and_see_text_and_cursors(
    ide: IdeServer, api: Api
) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    await api.create_file(alice, project_id, "shared.py", "# shared file\n")
    result = await run_browser("coedit", {
        "url": ide.url, "project_id": project_id, "file_name": "shared.py",
        "users": [creds(alice), creds(bob)],
    })
    for text in (result["alice_text"], result["bob_text"]):
        assert "# shared file" in text
        assert "alice was here" in text
        assert "bob was here too" in text
    assert result["alice_text"] == result["bob_text"]
    assert any("Bob" in name for name in result["alice_sees_cursors"])
    assert any("Alice" in name for name in result["bob_sees_cursors"])
    assert "bob was here too" in "".join(result["alice_sees_selection"])
    no_problems(result)


async def test_an_ai_edit_is_rejected_in_one_step_after_a_human_typed_elsewhere(
    ide: IdeServer, api: Api, fake_openai: FakeOpenAI
) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    original = "line one\nline two\nline three\n"
    await api.create_file(alice, project_id, "edit.py", original)
    pieces = ["NEW", " ONE", "\nNEW", " TWO", "\n"] + [f"# step {n}\n" for n in range(12)]
    fake_openai.play(Script(chunks=stream(pieces), delay_s=0.15))
    result = await run_browser("aiedit", {
        "url": ide.url, "project_id": project_id, "file_name": "edit.py",
        "users": [creds(alice), creds(bob)], "instruction": "shout",
        "first_piece": "NEW ONE", "bob_during": "# bob during", "bob_after": "# bob after",
    })
    written = "".join(pieces)
    assert written in result["after_edit"] and "line one" not in result["after_edit"]
    for text in (result["alice_text"], result["bob_text"]):
        assert text.startswith(original.rstrip("\n").split("\n")[0])
        assert "line one\nline two\nline three" in text
        assert "NEW" not in text and "# step" not in text
        assert "# bob during" in text and "# bob after" in text
    assert result["alice_text"] == result["bob_text"]
    assert result["alice_bar"] == "rejected"
    sent = fake_openai.requests[0].body["messages"][-1]["content"]
    assert "<<<SELECTION>>>line one\nline two\n<<<END SELECTION>>>" in sent
    no_problems(result)


async def test_a_security_analysis_shows_as_annotations_in_both_editors(
    ide: IdeServer, api: Api, fake_openai: FakeOpenAI
) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    code = "import subprocess\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    await api.create_file(alice, project_id, "tool.py", code)
    fake_openai.play(Script(chunks=stream(["F1: shell=True runs cmd in a shell.\n",
                                           "Summary: one risk."])))
    result = await run_browser("analysis", {
        "url": ide.url, "project_id": project_id, "file_name": "tool.py",
        "users": [creds(alice), creds(bob)],
    })
    for window in (result["alice"], result["bob"]):
        assert window["count"] >= 2  # bandit: B404 (import) and B602 (shell=True)
        assert window["ranges"] >= 1 and window["gutter"] >= 1
    no_problems(result)


async def test_file_created_renamed_deleted_by_one_appears_live_for_the_other(
    ide: IdeServer, api: Api
) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    await api.create_file(alice, project_id, "README.md", "hello\n")
    result = await run_browser("tree", {
        "url": ide.url, "project_id": project_id, "users": [creds(alice), creds(bob)],
    })
    assert result["created"] == 1
    assert result["bob_tree"] == ["README.md"]
    no_problems(result)


async def test_chat_answer_streams_token_by_token_into_both_windows(
    ide: IdeServer, api: Api, fake_openai: FakeOpenAI
) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    conversation = await api.call(
        "POST", f"/projects/{project_id}/conversations", alice, {"title": "Pairing"}
    )
    fake_openai.play(Script(chunks=stream(ANSWER), delay_s=0.12))
    result = await run_browser("chat", {
        "url": ide.url, "project_id": project_id, "conversation_id": conversation["id"],
        "question": "How do I print x?", "users": [creds(alice), creds(bob)],
    })
    answer = "".join(ANSWER)
    for window in ("alice", "bob"):
        seen = result[window]["seen"]
        assert seen[-1] == answer
        # Streamed: the bubble grew through several prefixes of the answer, not all at once.
        prefixes = [text for text in seen if text and answer.startswith(text) and text != answer]
        assert len(prefixes) >= 3, seen
        roles = [m["role"] for m in result[window]["messages"]]
        assert roles[-2:] == ["user", "assistant"], result[window]["messages"]
        assert result[window]["messages"][-2]["text"] == "How do I print x?"
    # The provider got the question once, not once per window.
    assert len(fake_openai.requests) == 1
    no_problems(result)


async def test_terminal_echo_is_seen_by_both(ide: IdeServer, api: Api) -> None:
    alice, bob, stage = await pair(api)
    result = await run_browser("terminal", {
        "url": ide.url, "project_id": stage["project"]["id"],
        "command": "echo e2e-$((6*7))", "expect": "e2e-42",
        "users": [creds(alice), creds(bob)],
    })
    assert "e2e-42" in result["alice"]
    assert "e2e-42" in result["bob"]
    no_problems(result)


async def test_run_button_shows_output_in_both_windows(ide: IdeServer, api: Api) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    await api.create_file(alice, project_id, "main.py", "print('run', 6 * 7)\n")
    result = await run_browser("run", {
        "url": ide.url, "project_id": project_id, "file_name": "main.py", "expect": "run 42",
        "users": [creds(alice), creds(bob)],
    })
    assert "run 42" in result["alice"]
    assert "run 42" in result["bob"]
    no_problems(result)


async def test_reload_restores_the_open_files(ide: IdeServer, api: Api) -> None:
    alice, _bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    for name in ("a.py", "b.py", "c.txt"):
        await api.create_file(alice, project_id, name, f"# {name}\n")
    result = await run_browser("reload", {
        "url": ide.url, "project_id": project_id, "file_names": ["a.py", "b.py", "c.txt"],
        "users": [creds(alice)],
    })
    assert result["before"] == ["a.py", "b.py", "c.txt"]
    assert result["after"] == result["before"]
    assert result["active"] == "a.py"
    assert result["restored_from"] == "server", "the editor session comes from the server"
    no_problems(result)


async def test_saved_version_is_restored_into_both_editors(ide: IdeServer, api: Api) -> None:
    alice, bob, stage = await pair(api)
    project_id = stage["project"]["id"]
    await api.create_file(alice, project_id, "story.md", "once upon a time\n")
    result = await run_browser("versions", {
        "url": ide.url, "project_id": project_id, "file_name": "story.md",
        "users": [creds(alice), creds(bob)],
    })
    for text in (result["alice_text"], result["bob_text"]):
        assert "once upon a time" in text
        assert "an edit to undo" not in text
    assert result["alice_text"] == result["bob_text"]
    assert any("first draft" in v for v in result["versions"])
    assert len(result["versions"]) >= 2, "the restore is itself a new version"
    no_problems(result)


async def test_a_viewer_reads_along_but_cannot_change_anything(ide: IdeServer, api: Api) -> None:
    alice, bob, stage = await pair(api, role="viewer")
    project_id = stage["project"]["id"]
    await api.create_file(alice, project_id, "spec.md", "# spec\n")
    result = await run_browser("viewer", {
        "url": ide.url, "project_id": project_id, "file_name": "spec.md",
        "users": [creds(alice), creds(bob)],
    })
    assert "written by the owner" in result["bob_text"]
    assert "viewer typing" not in result["bob_text"]
    assert "viewer typing" not in result["alice_text"]
    assert result["bob_readonly"] == "true"
    assert not result["bob_run_visible"]
    assert not result["bob_new_file_visible"]
    assert result["bob_rename_buttons"] == 0
    no_problems(result)


async def test_sign_in_with_github_then_disconnect_and_connect_again(
    settings: Settings, exec_root: Path
) -> None:
    github = FakeOAuthProvider("github", user=FakeUser("9001", "octo-e2e", "Octo E2E",
                                                       "octo-e2e@example.com"))
    await github.start()
    server = await start_ide_server(
        dataclasses.replace(settings, oauth=OAuthConfig.from_env(github.env())), exec_root)
    try:
        result = await run_browser("oauth", {"url": server.url})
    finally:
        await server.stop()
        await github.stop()
    assert result["user"].strip() == "Octo E2E"
    assert "oauth=" not in result["hash_after_sign_in"], "the one-time code leaves the address"
    assert "octo-e2e" in result["listed"]
    assert result["storage"]["local"] == []
    assert len(github.revocations) == 1  # the disconnect revoked the grant at GitHub
    assert not result["problems"], result["problems"]
