"""The Vercel target: the project's files deployed through Vercel's REST API.

Wire (https://vercel.com/docs/rest-api): ``POST /v13/deployments`` with the files as
``{file, sha, size}`` (SHA-1 of the bytes); Vercel answers 400 ``missing_files`` with the
SHAs it does not have, which are uploaded with ``POST /v2/files`` (``x-vercel-digest``)
before creating again; ``GET /v13/deployments/{id}`` is polled until ``readyState`` is
``READY``, ``ERROR`` or ``CANCELED``; the build's output comes from
``GET /v3/deployments/{id}/events``; production is pointed at a deployment with ``POST
/v2/deployments/{id}/aliases``; a cancel is ``PATCH /v12/deployments/{id}/cancel``. Every call
carries the workspace's token (``api_integrations``, provider ``vercel``) and ``teamId`` when
the key's config names a team. A 429 is waited out (``Retry-After`` or
``X-RateLimit-Reset``, at most ``MAX_RATE_WAIT_S`` per call, ``MAX_RETRIES`` times).

Vercel builds the project itself, so the source files are sent, not our build's output.
No official Python client covers these endpoints (the ``vercel`` package on PyPI is for
functions and storage), hence this small aiohttp client.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persistence.crypto import Keyring
from persistence.db import Database
from persistence.integrations import workspace_key
from preview.builds import Build, TargetError

if TYPE_CHECKING:
    import aiohttp

MAX_RETRIES = 5
MAX_RATE_WAIT_S = 30.0
MAX_FILES = 5000
MAX_FILE_BYTES = 50 * 1024 * 1024
SKIPPED_DIRS = frozenset({".git", "node_modules", ".icreate"})
PROJECT_SLUG = "select slug from public.projects where id = $1"


class VercelError(TargetError):
    def __init__(self, status: int, code: str, message: str,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(f"Vercel: {message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.body = body or {}


class VercelClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str,
                 team_id: str | None = None) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.params = {"teamId": team_id} if team_id else {}

    async def call(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> Any:
        for attempt in range(MAX_RETRIES + 1):
            async with self.http.request(
                method, self.base + path, json=json, data=data, params=self.params,
                headers={**self.headers, **(headers or {})},
            ) as reply:
                body = await reply.json(content_type=None) if reply.content_length != 0 else {}
                if reply.status == 429 and attempt < MAX_RETRIES:
                    await asyncio.sleep(_rate_wait(reply.headers))
                    continue
                if reply.status >= 400:
                    error = (body or {}).get("error") if isinstance(body, dict) else None
                    error = error if isinstance(error, dict) else {}
                    raise VercelError(reply.status, str(error.get("code") or reply.status),
                                      str(error.get("message") or reply.reason), error)
                return body if body is not None else {}
        raise VercelError(429, "rate_limited", "still rate limited after retries")

    async def upload(self, sha: str, data: bytes) -> None:
        await self.call("POST", "/v2/files", data=data, headers={
            "Content-Type": "application/octet-stream", "x-vercel-digest": sha,
            "Content-Length": str(len(data))})

    async def create(self, name: str, files: list[dict[str, Any]],
                     production: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "files": files,
                                "projectSettings": {"framework": None}}
        if production:
            body["target"] = "production"
        result: dict[str, Any] = await self.call("POST", "/v13/deployments", json=body)
        return result

    async def get(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", f"/v13/deployments/{deployment_id}")
        return result

    async def events(self, deployment_id: str) -> list[dict[str, Any]]:
        result = await self.call("GET", f"/v3/deployments/{deployment_id}/events")
        return result if isinstance(result, list) else []

    async def alias(self, deployment_id: str, alias: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "POST", f"/v2/deployments/{deployment_id}/aliases", json={"alias": alias})
        return result

    async def cancel(self, deployment_id: str) -> None:
        await self.call("PATCH", f"/v12/deployments/{deployment_id}/cancel")


def _rate_wait(headers: Any) -> float:
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        try:
            return min(MAX_RATE_WAIT_S, max(0.0, float(retry_after)))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return min(MAX_RATE_WAIT_S, max(0.0, float(reset) - time.time()))
        except ValueError:
            pass
    return 1.0


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (rel.parts and rel.parts[0] in SKIPPED_DIRS) or path.is_symlink() or not path.is_file():
            continue
        yield rel.as_posix(), path


def _manifest(root: Path) -> dict[str, tuple[str, Path, int]]:
    """path -> (sha1, file, size); blocking."""
    out: dict[str, tuple[str, Path, int]] = {}
    for rel, path in _files(root):
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TargetError(f"{rel} is larger than Vercel's {MAX_FILE_BYTES >> 20} MiB limit")
        out[rel] = (hashlib.sha1(path.read_bytes()).hexdigest(), path, size)
        if len(out) > MAX_FILES:
            raise TargetError(f"more than {MAX_FILES} files to deploy")
    return out


class VercelTarget:
    name = "vercel"
    builds_itself = True

    def __init__(self, db: Database, keyring: Keyring, base_url: str, *,
                 timeout_s: float, poll_s: float) -> None:
        self.db = db
        self.keyring = keyring
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    async def _client(self, http: aiohttp.ClientSession,
                      workspace_id: uuid.UUID | None) -> VercelClient:
        async with self.db.service() as conn:
            key = (await workspace_key(conn, self.keyring, workspace_id, ["vercel"])
                   if workspace_id else None)
        if key is None:
            raise TargetError("this workspace has no Vercel token: add one under the "
                              "workspace's integrations (provider vercel)")
        team = key.config.get("team_id")
        return VercelClient(http, self.base_url, key.api_key, str(team) if team else None)

    async def deploy(self, build: Build) -> tuple[str, str | None]:
        async with self.db.service() as conn:
            slug = await conn.fetchval(PROJECT_SLUG, build.key.project_id)
        name = str(slug or build.key.project_id.hex)[:100]
        production = build.key.environment == "production"
        manifest = await asyncio.to_thread(_manifest, build.layout.app)
        files = [{"file": rel, "sha": sha, "size": size}
                 for rel, (sha, _path, size) in manifest.items()]
        by_sha = {sha: path for sha, path, _size in manifest.values()}
        import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            client = await self._client(http, build.workspace_id)
            await build.logs.line(f"vercel: {len(files)} files for {name}")
            try:
                created = await client.create(name, files, production)
            except VercelError as exc:
                if exc.code != "missing_files":
                    raise
                missing = [str(s) for s in exc.body.get("missing") or [] if s in by_sha]
                await build.logs.line(f"vercel: uploading {len(missing)} new files")
                for sha in missing:
                    await client.upload(sha, await asyncio.to_thread(by_sha[sha].read_bytes))
                created = await client.create(name, files, production)
            deployment_id = str(created["id"])
            await build.logs.line(f"vercel: deployment {deployment_id} created")
            try:
                final = await self._poll(client, deployment_id)
            except asyncio.CancelledError:
                await asyncio.shield(client.cancel(deployment_id))
                raise
            for event in await client.events(deployment_id):
                text = event.get("text") or (event.get("payload") or {}).get("text")
                if text:
                    await build.logs.write(str(text).rstrip("\n") + "\n")
            if final["readyState"] != "READY":
                raise TargetError(f"Vercel build {final['readyState'].lower()}: "
                                  f"{final.get('errorMessage') or 'no message'}")
            url = f"https://{final['url']}"
            if production:
                alias = f"{name}.vercel.app"
                await client.alias(deployment_id, alias)
                await build.logs.line(f"vercel: aliased {alias}")
                url = f"https://{alias}"
            return url, deployment_id

    async def _poll(self, client: VercelClient, deployment_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            state = await client.get(deployment_id)
            if state.get("readyState") in {"READY", "ERROR", "CANCELED"}:
                return state
            if time.monotonic() > deadline:
                await client.cancel(deployment_id)
                raise TargetError(f"Vercel did not finish within {self.timeout_s:g} s "
                                  "(the deployment was canceled)")
            await asyncio.sleep(self.poll_s)

    async def promote(self, row: dict[str, Any]) -> None:
        """Roll back / promote: point the production alias at this deployment again."""
        if not row.get("external_id"):
            raise TargetError("this deployment has no Vercel id")
        async with self.db.service() as conn:
            slug = await conn.fetchval(PROJECT_SLUG, row["project_id"])
            workspace = await conn.fetchval(
                "select workspace_id from public.projects where id = $1", row["project_id"])
        import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            client = await self._client(http, workspace)
            await client.alias(str(row["external_id"]),
                               f"{str(slug or row['project_id'].hex)[:100]}.vercel.app")
