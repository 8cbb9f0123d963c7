"""A machine without the embedded model's runtime: the app serves at once, says
``installing`` (in /healthz, and to a chat user at once, not after a wait), installs the
``ai`` extra in the background, and answers with the model once it is in. Stopping the app
while the install runs stops the install with it.

The environment is a new venv with everything this one has except llama-cpp-python (what
``make install`` leaves); pip then installs it as on a fresh machine, from the wheel that
pip's cache keeps since ``make test`` built it. The test holds the installer's lock for the
first start, as a second process of the same environment would (``make cluster``).
"""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.settings import Settings
from tests.ai.helpers import Team, connect
from tests.support.net import free_port
from tests.support.servers import ProcessServer, server_env

RUNTIME_PREFIX = ("llama_cpp",)  # the package and its llama_cpp_python-*.dist-info


def venv_without_runtime(root: Path) -> Path:
    """A venv holding this one's packages, llama-cpp-python left out; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    target = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    source = Path(sysconfig.get_paths()["purelib"])
    for entry in source.iterdir():
        if entry.name.startswith(RUNTIME_PREFIX):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, target / entry.name)
    return python


def processes_using(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


async def health(session: aiohttp.ClientSession, server: ProcessServer) -> dict[str, Any]:
    async with session.get(server.url + "/healthz") as resp:
        body: dict[str, Any] = await resp.json()
        return body


@pytest.mark.timeout(600)
async def test_app_serves_while_the_model_runtime_installs_then_answers_with_it(
    settings: Settings, team: Team, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    python = await asyncio.to_thread(venv_without_runtime, venv)
    env = server_env(settings, {
        "AI_EMBEDDED": "1", "AI_EMBEDDED_THREADS": "1", "LOG_LEVEL": "info",
        "PORT": "1", "HOST": "0.0.0.0",  # as on a `make cluster` node
    })
    log_path = settings.data_dir / "logs" / "ai-install.log"

    # First start: another process of this environment holds the install lock.
    with (venv / ".icreate-ai-install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = ProcessServer(free_port(), env, tmp_path / "first.log", python=str(python))
        await first.start(timeout_s=60)
        try:
            async with aiohttp.ClientSession() as session:
                body = await health(session, first)
            assert body["chat"]["state"] == "installing", body["chat"]
            assert body["chat"]["log"] == str(log_path)
            assert body["status"] == "ok" and body["starting"] == ["chat"]
            client = await connect(first.ws_url, team.conversation, team.owner)
            started = time.monotonic()
            await client.ask("are you there?")
            error = await client.until("error", timeout=10)
            assert error["code"] == "ai_installing" and "being installed" in error["message"]
            assert time.monotonic() - started < 5
            await client.close()
            assert processes_using("ai.runtime_install"), "the installer is not running"
        finally:
            assert await first.terminate() == 0
        assert processes_using(str(venv)) == [], "the install outlived its server"

    # Second start, nothing in the way: installed in the background, then the model answers.
    second = ProcessServer(free_port(), env, tmp_path / "second.log", python=str(python))
    await second.start(timeout_s=60)
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 480
            chat = (await health(session, second))["chat"]
            while chat["state"] in ("installing", "installed", "starting"):
                assert time.monotonic() < deadline, "the runtime was not installed in time"
                await asyncio.sleep(1)
                chat = (await health(session, second))["chat"]
        assert chat["state"] == "ready", (chat, log_path.read_text()[-2000:])
        assert chat["install_s"] > 0
        client = await connect(second.ws_url, team.conversation, team.owner)
        await client.ask("Say hello.")
        done = await client.until_finished(timeout=120)
        assert done["type"] == "done" and done["message"]["content"], done
        await client.close()
    finally:
        await second.terminate()
    assert "Successfully installed" in log_path.read_text()
