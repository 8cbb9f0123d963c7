"""End-to-end harness: the app on a real uvicorn whose own origin is allowed, users made
through the REST API, and the Node Playwright driver (``browser.mjs``) run as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from server.app import create_app
from server.serving import uvicorn_options
from server.settings import Settings
from tests.support.net import free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
DRIVER = Path(__file__).with_name("browser.mjs")
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "correct horse battery staple"


@dataclass
class IdeServer:
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)


async def start_ide_server(settings: Settings, exec_root: Path) -> IdeServer:
    """The app on a free port, with that port's origin allowed (browsers always send Origin).

    ``exec_root`` holds the run workspaces: absolute and traversable by the sandbox uid
    (pytest's tmp_path sits under a 0700 directory, which bubblewrap's uid cannot enter).
    """
    port = free_port()
    execution = dataclasses.replace(
        settings.execution,
        workdir_root=exec_root / "workspaces",
        storage_root=exec_root / "storage",
    )
    settings = dataclasses.replace(
        settings, allowed_origins=(f"http://127.0.0.1:{port}",), host="127.0.0.1", port=port,
        execution=execution,
        storage=dataclasses.replace(settings.storage, directory=exec_root / "objects"),
    )
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning",
        lifespan="on", **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    ide = IdeServer(settings, server, task, port)
    await wait_http_ok(ide.url + "/healthz")
    return ide


@dataclass
class User:
    id: str
    email: str
    name: str
    access_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Api:
    """The REST calls a test needs to set the stage before the browsers arrive."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base + "/api/v1"
        self.http = http

    async def call(self, method: str, path: str, user: User | None, body: Any = None) -> Any:
        headers = user.auth if user else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            text = await r.text()
            assert r.status < 300, f"{method} {path} -> {r.status} {text}"
            return json.loads(text) if text else None

    async def sign_up(self, email: str, name: str) -> User:
        data = await self.call(
            "POST", "/auth/signup", None, {"email": email, "password": PASSWORD, "full_name": name}
        )
        return User(str(data["user"]["id"]), email, name, data["access_token"])

    async def shared_project(
        self, owner: User, *members: User, role: str = "member"
    ) -> dict[str, Any]:
        """A workspace of ``owner`` with ``members`` in it (as ``role``), and a project."""
        workspace = await self.call("POST", "/workspaces", owner, {"name": "Pair programming"})
        for member in members:
            await self.call(
                "POST", f"/workspaces/{workspace['id']}/members", owner,
                {"email": member.email, "role": role},
            )
        project = await self.call(
            "POST", f"/workspaces/{workspace['id']}/projects", owner, {"name": "demo"}
        )
        return {"workspace": workspace, "project": project}

    async def create_file(
        self, user: User, project_id: str, name: str, content: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "type": "file"}
        if content is not None:
            body["content"] = content
        file: dict[str, Any] = await self.call("POST", f"/projects/{project_id}/files", user, body)
        return file


class DriverError(AssertionError):
    pass


async def run_browser(scenario: str, config: dict[str, Any], timeout_s: float = 150.0) -> Any:
    """Run one scenario of ``browser.mjs``; its last stdout line is the JSON result."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (WEB / "node_modules" / "playwright-core").is_dir(), "run `npm ci` in web/"
    assert (WEB / "dist" / "index.html").is_file(), "run `npm run build` in web/"
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    artifacts = ARTIFACTS / scenario
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    payload = {**config, "artifacts": str(artifacts), "chromium": CHROMIUM}
    proc = await asyncio.create_subprocess_exec(
        node, str(DRIVER), scenario,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DriverError(f"browser scenario {scenario} timed out after {timeout_s}s") from None
    (artifacts / "driver.log").write_bytes(err)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise DriverError(
            f"browser scenario {scenario} failed ({proc.returncode}):\n{err.decode()[-4000:]}"
        )
    return json.loads(lines[-1])
