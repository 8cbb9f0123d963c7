"""Firecrawl's scrape API: a web page as markdown, to attach to a chat message as context.

Wire format (Firecrawl API v1): ``POST {base}/v1/scrape`` with ``Authorization: Bearer
<key>`` and ``{"url", "formats": ["markdown"], "onlyMainContent": true}``; success is
``{"success": true, "data": {"markdown", "metadata": {"title", "sourceURL", "statusCode"}}}``;
failures are ``{"success": false, "error": "..."}`` with 400 (bad URL), 401 (bad key), 402
(no credits left), 408 (the page timed out), 429 (rate limited), 500. The key check is
``GET {base}/v1/team/credit-usage``. Firecrawl fetches the page, not us, so a chat URL
cannot reach this server's network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_URL = 2048

ERROR_CODES = {
    400: "web_page_invalid",
    401: "firecrawl_key_rejected",
    403: "firecrawl_key_rejected",
    402: "firecrawl_out_of_credits",
    408: "web_page_timeout",
    429: "firecrawl_rate_limited",
}


class FirecrawlError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class WebPage:
    url: str
    title: str | None
    markdown: str


def check_url(url: str) -> str:
    """An http(s) URL with a host, or ``FirecrawlError``."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise FirecrawlError("web_page_invalid", "give an http:// or https:// page address")
    return url


def _error(status: int, body: Any) -> FirecrawlError:
    message = body.get("error") if isinstance(body, dict) else None
    code = ERROR_CODES.get(status, "firecrawl_error")
    return FirecrawlError(code, str(message or f"Firecrawl answered {status}"), status)


class FirecrawlClient:
    def __init__(self, base_url: str, timeout_s: float = 45.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def _call(self, method: str, path: str, api_key: str, body: Any = None) -> Any:
        import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as session, session.request(
                method, self.base_url + path, headers=headers,
                data=None if body is None else json.dumps(body),
            ) as resp:
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FirecrawlError(
                "firecrawl_unreachable", f"Firecrawl unreachable: {type(exc).__name__}"
            ) from exc
        if len(raw) > MAX_RESPONSE_BYTES:
            raise FirecrawlError("web_page_too_large", "the page is too large to attach")
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if status >= 400 or not isinstance(parsed, dict) or parsed.get("success") is False:
            raise _error(status if status >= 400 else 502, parsed)
        return parsed

    async def scrape(self, api_key: str, url: str) -> WebPage:
        body = await self._call("POST", "/v1/scrape", api_key, {
            "url": check_url(url), "formats": ["markdown"], "onlyMainContent": True,
        })
        data = body.get("data") or {}
        markdown = data.get("markdown")
        if not isinstance(markdown, str):
            raise FirecrawlError("firecrawl_error", "Firecrawl returned no markdown")
        meta = data.get("metadata") or {}
        title = meta.get("title") if isinstance(meta.get("title"), str) else None
        return WebPage(str(meta.get("sourceURL") or url), title, markdown)

    async def check_key(self, api_key: str) -> None:
        """Raises ``FirecrawlError`` (``firecrawl_key_rejected``...) unless the key works."""
        await self._call("GET", "/v1/team/credit-usage", api_key)
