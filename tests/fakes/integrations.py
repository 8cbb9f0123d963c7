"""One local server for the integrations' wire formats: the key checks and Firecrawl.

- OpenAI ``GET /v1/models`` (Bearer; 401 ``invalid_api_key``), Anthropic ``GET /v1/models``
  (``x-api-key`` + ``anthropic-version``; 401 ``authentication_error``), Vercel ``GET
  /v2/user`` (403 ``{"error": {"invalidToken": true}}``), GitHub ``GET /user`` (401 ``Bad
  credentials``), Firecrawl ``GET /v1/team/credit-usage`` (401).
- Firecrawl ``POST /v1/scrape``: ``{"success": true, "data": {"markdown", "metadata"}}`` or
  its failures, chosen by ``scrape_mode``: ``credits`` (402), ``rate_limited`` (429),
  ``timeout`` (408), ``error`` (500); a URL that is not http(s) gets 400.
- ``down = True``: every endpoint answers 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port


@dataclass
class FakeIntegrations:
    valid_keys: set[str] = field(default_factory=set)
    pages: dict[str, tuple[str, str]] = field(default_factory=dict)  # url -> (title, markdown)
    scrape_mode: str = "ok"
    down: bool = False
    port: int = field(default_factory=free_port)
    scraped: list[dict[str, Any]] = field(default_factory=list)
    checked: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {name: self.url for name in (
            "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "FIRECRAWL_BASE_URL", "VERCEL_API_URL",
            "GITHUB_API_URL")}

    async def start(self) -> None:
        app = web.Application(middlewares=[self._outage])
        app.add_routes([
            web.get("/v1/models", self.models),
            web.get("/v1/team/credit-usage", self.credit_usage),
            web.post("/v1/scrape", self.scrape),
            web.get("/v2/user", self.vercel_user),
            web.get("/user", self.github_user),
        ])
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.checked.append((request.path, dict(request.headers)))
        if self.down:
            return web.json_response({"error": "service unavailable"}, status=503)
        result: web.StreamResponse = await handler(request)
        return result

    def _bearer_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.valid_keys

    async def models(self, request: web.Request) -> web.Response:
        if "x-api-key" in request.headers:  # Anthropic
            if not request.headers.get("anthropic-version"):
                return web.json_response({"type": "error", "error": {
                    "type": "invalid_request_error", "message": "anthropic-version required"}},
                    status=400)
            if request.headers["x-api-key"] not in self.valid_keys:
                return web.json_response({"type": "error", "error": {
                    "type": "authentication_error", "message": "invalid x-api-key"}}, status=401)
            return web.json_response({"data": [{"id": "claude-fake", "type": "model"}],
                                      "has_more": False})
        if not self._bearer_ok(request):
            return web.json_response({"error": {
                "message": "Incorrect API key provided", "type": "invalid_request_error",
                "param": None, "code": "invalid_api_key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "gpt-fake-1"}]})

    async def credit_usage(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return web.json_response({"success": False, "error": "Unauthorized: Invalid token"},
                                     status=401)
        return web.json_response({"success": True, "data": {"remaining_credits": 500}})

    async def scrape(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return web.json_response({"success": False, "error": "Unauthorized: Invalid token"},
                                     status=401)
        body = await request.json()
        self.scraped.append(body)
        url = str(body.get("url", ""))
        if not url.startswith(("http://", "https://")):
            return web.json_response({"success": False, "error": "Bad Request",
                                      "details": [{"message": "Invalid URL"}]}, status=400)
        failures = {
            "credits": (402, "Payment required to access this resource."),
            "rate_limited": (429, "Rate limit exceeded. Consumed (req/min): 11, Remaining "
                                  "(req/min): 0. Upgrade your plan."),
            "timeout": (408, "Request timed out"),
            "error": (500, "An unexpected error occurred. Please contact support."),
        }
        if self.scrape_mode in failures:
            status, message = failures[self.scrape_mode]
            return web.json_response({"success": False, "error": message}, status=status)
        title, markdown = self.pages.get(url, ("Untitled", f"# {url}\n\nNothing here."))
        return web.json_response({"success": True, "data": {
            "markdown": markdown,
            "metadata": {"title": title, "sourceURL": url, "statusCode": 200},
        }})

    async def vercel_user(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return web.json_response({"error": {"code": "forbidden", "message": "Not authorized",
                                                "invalidToken": True}}, status=403)
        return web.json_response({"user": {"id": "u_1", "username": "deployer",
                                           "email": "d@example.test"}})

    async def github_user(self, request: web.Request) -> web.Response:
        if not self._bearer_ok(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response({"login": "octo", "id": 1})
