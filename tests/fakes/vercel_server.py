"""A local server speaking Vercel's deployment REST API, with its failure modes.

- ``POST /v2/files`` (``x-vercel-digest`` must be the SHA-1 of the body: else 400
  ``invalid_digest``), ``POST /v13/deployments`` (400 ``missing_files`` with ``missing``:
  the SHAs not uploaded yet), ``GET /v13/deployments/{id}`` (QUEUED -> BUILDING -> READY,
  one step per poll), ``GET /v3/deployments/{id}/events``, ``POST
  /v2/deployments/{id}/aliases``, ``PATCH /v12/deployments/{id}/cancel``.
- Bearer tokens in ``tokens`` only (403 ``forbidden`` / ``invalidToken`` otherwise).
- ``rate_limited``: the next N requests get 429 ``rate_limited`` with ``X-RateLimit-Reset``
  a second ahead; ``build_error``: deployments end in ERROR with an ``errorMessage`` and
  the build's output in the events; ``hang``: deployments stay BUILDING (a timeout).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port


@dataclass
class FakeVercel:
    tokens: set[str] = field(default_factory=set)
    rate_limited: int = 0
    build_error: bool = False
    hang: bool = False
    port: int = field(default_factory=free_port)
    files: dict[str, bytes] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> deployment id
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    throttled: int = 0

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.post("/v2/files", self.upload),
            web.post("/v13/deployments", self.create),
            web.get("/v13/deployments/{id}", self.get),
            web.get("/v3/deployments/{id}/events", self.events),
            web.post("/v2/deployments/{id}/aliases", self.alias),
            web.patch("/v12/deployments/{id}/cancel", self.cancel),
        ])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message, **extra}},
                                 status=status)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.rate_limited > 0:
            self.rate_limited -= 1
            self.throttled += 1
            response = self._error(429, "rate_limited", "Rate limit exceeded")
            response.headers["X-RateLimit-Limit"] = "100"
            response.headers["X-RateLimit-Remaining"] = "0"
            response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 1)
            return response
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return web.json_response({"error": {"code": "forbidden", "message":
                                                "Not authorized", "invalidToken": True}},
                                     status=403)
        result: web.StreamResponse = await handler(request)
        return result

    async def upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        digest = request.headers.get("x-vercel-digest", "")
        if hashlib.sha1(body).hexdigest() != digest:
            return self._error(400, "invalid_digest", "The digest does not match the body")
        self.files[digest] = body
        return web.json_response({})

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        files = body.get("files")
        if not isinstance(body.get("name"), str) or not isinstance(files, list):
            return self._error(400, "bad_request", "name and files are required")
        missing = sorted({f["sha"] for f in files if f["sha"] not in self.files})
        if missing:
            return self._error(400, "missing_files", "Missing files", missing=missing)
        deployment_id = "dpl_" + uuid.uuid4().hex[:24]
        row = {
            "id": deployment_id, "name": body["name"],
            "url": f"{body['name']}-{deployment_id[4:13]}.vercel.app",
            "readyState": "QUEUED", "target": body.get("target"),
            "files": {f["file"]: f["sha"] for f in files}, "createdAt": int(time.time() * 1000),
        }
        self.deployments[deployment_id] = row
        return web.json_response(self._public(row))

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "files"}

    def _row(self, request: web.Request) -> dict[str, Any] | None:
        return self.deployments.get(request.match_info["id"])

    async def get(self, request: web.Request) -> web.Response:
        row = self._row(request)
        if row is None:
            return self._error(404, "not_found", "Deployment not found")
        state = row["readyState"]
        if state == "QUEUED":
            row["readyState"] = "BUILDING"
        elif state == "BUILDING" and not self.hang:
            if self.build_error:
                row["readyState"] = "ERROR"
                row["errorMessage"] = "Command \"npm run build\" exited with 1"
            else:
                row["readyState"] = "READY"
        return web.json_response(self._public(row))

    async def events(self, request: web.Request) -> web.Response:
        row = self._row(request)
        if row is None:
            return self._error(404, "not_found", "Deployment not found")
        lines = ["Cloning completed", "Running \"npm run build\""]
        lines += (["Error: Cannot find module 'left-pad'"] if self.build_error
                  else ["Build Completed in /vercel/output"])
        return web.json_response([{"type": "stdout", "created": row["createdAt"], "text": t}
                                  for t in lines])

    async def alias(self, request: web.Request) -> web.Response:
        row = self._row(request)
        if row is None:
            return self._error(404, "not_found", "Deployment not found")
        if row["readyState"] != "READY":
            return self._error(400, "deployment_not_ready", "The deployment is not ready")
        alias = (await request.json()).get("alias")
        self.aliases[alias] = row["id"]
        return web.json_response({"uid": uuid.uuid4().hex, "alias": alias,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ")})

    async def cancel(self, request: web.Request) -> web.Response:
        row = self._row(request)
        if row is None:
            return self._error(404, "not_found", "Deployment not found")
        row["readyState"] = "CANCELED"
        return web.json_response(self._public(row))
