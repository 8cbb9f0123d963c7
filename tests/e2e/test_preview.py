"""The live preview pane in a real Chromium: deploy, the frame shows index.html, an edit
typed in the IDE shows in the frame, and the previewed app cannot read the IDE's tokens."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from server.settings import Settings
from tests.e2e.harness import PASSWORD, Api, run_browser, start_ide_server

pytestmark = pytest.mark.timeout(240)
# Typing the snippet (15 ms a key) included; the preview's own share is the watcher's tick,
# the static server's answer and the frame's reload.
EDIT_SHOWN_WITHIN_MS = 8000


@pytest.fixture
def exec_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="icreate-e2e-preview-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def test_edit_index_html_and_the_preview_pane_shows_it(
        settings: Settings, exec_root: Path) -> None:
    server = await start_ide_server(settings, exec_root)
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(server.url, http)
            alice = await api.sign_up(f"alice-{uuid.uuid4().hex[:6]}@example.com", "Alice")
            shared = await api.shared_project(alice)
            project_id = shared["project"]["id"]
            await api.create_file(alice, project_id, "index.html",
                                  "<h1>Before the edit</h1>\n")
        result = await run_browser("preview", {
            "url": server.url, "project_id": project_id,
            "user": {"email": alice.email, "password": PASSWORD, "name": "Alice"},
            "before": "Before the edit", "typed": "<p>typed in the IDE</p>",
            "expect": "typed in the IDE",
        }, timeout_s=220)
    finally:
        await server.stop()
    assert not result["problems"], result["problems"]
    assert result["latency_ms"] < EDIT_SHOWN_WITHIN_MS, result
    seen = result["seen"]
    assert ".localhost:" in seen["origin"] and seen["origin"] != server.url
    assert seen["cookie"] == ""            # the preview session cookie is HttpOnly
    # Its own storage is empty (or, as a third-party frame, not even readable).
    assert seen["session"] in ([], "SecurityError") and seen["local"] in ([], "SecurityError")
    assert seen["parent"] == "SecurityError"  # the IDE's sessionStorage is another origin's
    assert seen["fetch"] == "blocked"      # no CORS for the preview origin on the IDE's API
    assert any("CORS" in line or "Access-Control-Allow-Origin" in line
               for line in result["probe_console"])
    assert result["ide_session_keys"], "the IDE keeps its session in sessionStorage"
